/**
 * A VFIO device entry: its sections hold VFIO_MIG_FLAG_* records (qemu-migration.md §1.3),
 * read the way `vfio_load_state` reads them (§1.5) — u64 tags until one that ends the section.
 * Device data is counted and skipped, never kept.
 */
import {
  VFIO_MIG_FLAG_DEV_CONFIG_LOAD_READY,
  VFIO_MIG_FLAG_DEV_CONFIG_STATE,
  VFIO_MIG_FLAG_DEV_DATA_STATE,
  VFIO_MIG_FLAG_DEV_INIT_DATA_SENT,
  VFIO_MIG_FLAG_DEV_SETUP_STATE,
  VFIO_MIG_FLAG_END_OF_STATE,
  badInput,
  vfioMigFlagName,
} from '../../migration/stream/index.ts';
import type { QEMUFileReader, SectionStartHeader } from '../../migration/stream/index.ts';
import type { EntryDecoder } from '../entry.ts';
import type { InspectedSection, SectionKind, VfioDeviceTotals, VfioPayload } from '../report.ts';
import { skipVfioConfigBlob } from './vfio-config.ts';

/** `register_savevm_live` registers every VFIO device at version 1 (§1.2). */
export const VFIO_SECTION_VERSION_ID = 1;

/** "0000:00:05.0/vfio", or a bare "vfio" for a device without an id path (§1.2). */
export function isVfioIdstr(idstr: string): boolean {
  return idstr === 'vfio' || idstr.endsWith('/vfio');
}

export class VfioEntryDecoder implements EntryDecoder<VfioPayload> {
  readonly format = 'vfio';

  begin(): VfioPayload {
    return {
      format: 'vfio',
      setup: false,
      dataRecords: 0,
      dataBytes: 0,
      configBytes: null,
      end: null,
    };
  }

  async decodeSection(r: QEMUFileReader, _type: SectionKind, s: VfioPayload): Promise<void> {
    for (;;) {
      const at = r.offset;
      const tag = await r.getBe64('VFIO tag');
      switch (tag) {
        case VFIO_MIG_FLAG_END_OF_STATE:
          // Alone, this is the dummy EOS of an END/FULL section in multifd mode (§4.6).
          s.end = 'END_OF_STATE';
          return;
        case VFIO_MIG_FLAG_DEV_SETUP_STATE:
          await expectEndOfState(r, 'DEV_SETUP_STATE');
          s.setup = true;
          s.end = 'END_OF_STATE';
          return;
        case VFIO_MIG_FLAG_DEV_DATA_STATE: {
          const size = await r.getBe64Number('DEV_DATA_STATE size');
          await r.skip(size, `DEV_DATA_STATE data (${size} bytes from offset ${at + 16})`);
          s.dataRecords++;
          s.dataBytes += size;
          break;
        }
        case VFIO_MIG_FLAG_DEV_CONFIG_STATE:
          s.configBytes = await skipVfioConfigBlob(r);
          await expectEndOfState(r, 'the device config');
          s.end = 'END_OF_STATE';
          return;
        case VFIO_MIG_FLAG_DEV_INIT_DATA_SENT:
          // No END_OF_STATE follows: the loader returns right after approving switchover.
          s.end = 'DEV_INIT_DATA_SENT';
          return;
        case VFIO_MIG_FLAG_DEV_CONFIG_LOAD_READY:
          s.end = 'DEV_CONFIG_LOAD_READY';
          return;
        default:
          throw badInput(at, 'VFIO tag', `unknown tag 0x${tag.toString(16).padStart(16, '0')}`);
      }
    }
  }
}

/** What one device sent over all its sections (those cut short count what they held). */
export function vfioDeviceTotals(
  h: SectionStartHeader,
  sections: readonly InspectedSection[],
): VfioDeviceTotals {
  const t: VfioDeviceTotals = {
    idstr: h.idstr,
    instanceId: h.instanceId,
    sectionId: h.sectionId,
    sections: sections.length,
    dataRecords: 0,
    dataBytes: 0,
    configSent: false,
    configBytes: 0,
    initDataSent: 0,
    configLoadReady: false,
  };
  for (const { payload: p } of sections) {
    if (p?.format !== 'vfio') continue;
    t.dataRecords += p.dataRecords;
    t.dataBytes += p.dataBytes;
    if (p.configBytes !== null) {
      t.configSent = true;
      t.configBytes += p.configBytes;
    }
    if (p.end === 'DEV_INIT_DATA_SENT') t.initDataSent++;
    if (p.end === 'DEV_CONFIG_LOAD_READY') t.configLoadReady = true;
  }
  return t;
}

async function expectEndOfState(r: QEMUFileReader, after: string): Promise<void> {
  const at = r.offset;
  const tag = await r.getBe64(`END_OF_STATE after ${after}`);
  if (tag !== VFIO_MIG_FLAG_END_OF_STATE) {
    const name = vfioMigFlagName(tag) ?? `0x${tag.toString(16).padStart(16, '0')}`;
    throw badInput(at, 'VFIO tag', `expected END_OF_STATE after ${after}, got ${name}`);
  }
}
