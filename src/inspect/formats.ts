/**
 * Which payload formats `inspect` understands, chosen by the START/FULL header that binds an
 * entry: its idstr and its version (a payload layout belongs to one version).
 */
import { RAM_SECTION_IDSTR, RAM_SECTION_VERSION_ID } from '../migration/ram/format.ts';
import type { MigrationConfiguration, SectionStartHeader } from '../migration/stream/index.ts';
import type { EntryDecoder } from './entry.ts';
import { RamEntryDecoder, ramFormatOf } from './payload/ram.ts';
import { VFIO_SECTION_VERSION_ID, VfioEntryDecoder, isVfioIdstr } from './payload/vfio.ts';
import {
  GLOBAL_STATE_IDSTR,
  GLOBAL_STATE_VERSION_ID,
  GlobalStateDecoder,
  TIMER_IDSTR,
  TIMER_VERSION_ID,
  TimerDecoder,
} from './payload/vmstate.ts';
import { VIOMMU_SECTION_IDSTR, VIOMMU_SECTION_VERSION, ViommuDecoder } from './payload/viommu.ts';
import type { PayloadFormat } from './report.ts';

interface KnownFormat {
  format: PayloadFormat;
  /** The section versions whose payload layout is known. */
  versionIds: readonly number[];
  matches(idstr: string): boolean;
  create(h: SectionStartHeader, cfg: MigrationConfiguration | null): EntryDecoder;
}

const KNOWN_FORMATS: readonly KnownFormat[] = [
  {
    format: 'ram',
    versionIds: [RAM_SECTION_VERSION_ID],
    matches: (idstr) => idstr === RAM_SECTION_IDSTR,
    create: (_h, cfg) => new RamEntryDecoder(ramFormatOf(cfg)),
  },
  {
    format: 'vfio',
    versionIds: [VFIO_SECTION_VERSION_ID],
    matches: isVfioIdstr,
    create: () => new VfioEntryDecoder(),
  },
  {
    format: 'globalstate',
    versionIds: [GLOBAL_STATE_VERSION_ID],
    matches: (idstr) => idstr === GLOBAL_STATE_IDSTR,
    create: () => new GlobalStateDecoder(),
  },
  {
    format: 'timer',
    versionIds: [1, TIMER_VERSION_ID],
    matches: (idstr) => idstr === TIMER_IDSTR,
    create: (h) => new TimerDecoder(h.versionId),
  },
  {
    format: 'viommu',
    versionIds: [VIOMMU_SECTION_VERSION],
    matches: (idstr) => idstr === VIOMMU_SECTION_IDSTR,
    create: () => new ViommuDecoder(),
  },
];

/**
 * The decoder for the entry `h` names, or why there is none: "unknown payload format", with
 * the known version when only the version differs. Throws when the configuration rules the
 * format out (e.g. a RAM layout that is not supported).
 */
export function entryDecoderFor(
  h: SectionStartHeader,
  cfg: MigrationConfiguration | null,
): EntryDecoder | string {
  const known = KNOWN_FORMATS.find((f) => f.matches(h.idstr));
  if (known === undefined) return 'unknown payload format';
  if (!known.versionIds.includes(h.versionId)) {
    const versions = known.versionIds.join(' and ');
    return (
      `unknown payload format (${known.format} version ${h.versionId}; ` +
      `known: version ${versions})`
    );
  }
  return known.create(h, cfg);
}
