/**
 * Decodes a whole QEMU 7.2 `-machine none` migration stream with the codec: header,
 * configuration, every section (ram through its record format, the two non-iterable
 * sections by their known layouts), commands, EOF and vmdesc. Guest RAM is rebuilt so tests
 * can compare it with the pattern QEMU loaded.
 */
import {
  QEMU_VM_COMMAND,
  QEMU_VM_EOF,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_START,
  badInput,
  parseVmdesc,
  readCommand,
  readConfiguration,
  readFileHeader,
  readSectionFooter,
  readSectionHeader,
  readSectionType,
  readVmdesc,
} from '../../../src/migration/stream/index.ts';
import type {
  MigCommand,
  MigrationConfiguration,
  QEMUFileReader,
  SectionStartHeader,
  Vmdesc,
} from '../../../src/migration/stream/index.ts';
import {
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_ZERO,
  RamRecordDecoder,
} from '../../../src/migration/ram/format.ts';
import type { RamBlockInfo, RamFormatOptions } from '../../../src/migration/ram/format.ts';
import {
  GLOBAL_STATE_IDSTR,
  GLOBAL_STATE_PAYLOAD_SIZE,
  GLOBAL_STATE_VERSION_ID,
} from '../../../src/migration/global-state.ts';
import { TIMER_IDSTR, TIMER_VERSION_ID, timerPayloadSize } from '../../../src/migration/timer.ts';

/**
 * Payload sizes of the non-iterable sections QEMU 7.2 sends for `-machine none`, as the core
 * knows them: "timer" v2 (src/migration/timer.ts) and "globalstate" v1
 * (src/migration/global-state.ts).
 */
export const QEMU72_FULL_SECTIONS: Record<string, { versionId: number; size: number }> = {
  [TIMER_IDSTR]: { versionId: TIMER_VERSION_ID, size: timerPayloadSize(TIMER_VERSION_ID) },
  [GLOBAL_STATE_IDSTR]: { versionId: GLOBAL_STATE_VERSION_ID, size: GLOBAL_STATE_PAYLOAD_SIZE },
};

export interface DecodedSection {
  kind: 'START' | 'PART' | 'END' | 'FULL';
  sectionId: number;
  idstr: string;
  instanceId: number;
  versionId: number;
  /** Payload bytes of FULL sections (ram payloads are decoded instead). */
  payload?: Buffer;
  /** ram: records seen in this section. */
  zeroPages?: number;
  normalPages?: number;
}

export interface DecodedStream {
  config: MigrationConfiguration;
  sections: DecodedSection[];
  commands: MigCommand[];
  ramBlocks: RamBlockInfo[];
  /** Guest RAM of the block named "ram", rebuilt from the records. */
  ram: Buffer;
  vmdesc: Vmdesc | null;
  vmdescText: string | null;
  /** Offset of the EOF byte. */
  eofOffset: number;
}

export async function decodeQemuStream(
  r: QEMUFileReader,
  ramOptions: RamFormatOptions = {},
  onCommand?: (c: MigCommand) => void,
): Promise<DecodedStream> {
  await readFileHeader(r);
  const config = await readConfiguration(r);
  const bound = new Map<number, SectionStartHeader>();
  const sections: DecodedSection[] = [];
  const commands: MigCommand[] = [];
  const ramDecoder = new RamRecordDecoder(ramOptions);
  let ram = Buffer.alloc(0);
  const page = Buffer.alloc(ramDecoder.pageSize);
  for (;;) {
    const at = r.offset;
    const type = await readSectionType(r);
    if (type === QEMU_VM_EOF) {
      const vmdescAt = r.offset;
      const vmdescText = await readVmdesc(r);
      const vmdesc = vmdescText === null ? null : parseVmdesc(vmdescText, vmdescAt);
      return {
        config,
        sections,
        commands,
        ramBlocks: ramDecoder.blocks,
        ram,
        vmdesc,
        vmdescText,
        eofOffset: at,
      };
    }
    if (type === QEMU_VM_COMMAND) {
      const c = await readCommand(r);
      commands.push(c);
      onCommand?.(c);
      continue;
    }
    const h = await readSectionHeader(r, type);
    let start: SectionStartHeader;
    if (h.type === QEMU_VM_SECTION_START || h.type === QEMU_VM_SECTION_FULL) {
      start = h;
      bound.set(h.sectionId, h);
    } else {
      const b = bound.get(h.sectionId);
      if (b === undefined) throw badInput(at, 'section header', `unknown section ${h.sectionId}`);
      start = b;
    }
    const kind = ({ 1: 'START', 2: 'PART', 3: 'END', 4: 'FULL' } as const)[h.type];
    const s: DecodedSection = {
      kind,
      sectionId: h.sectionId,
      idstr: start.idstr,
      instanceId: start.instanceId,
      versionId: start.versionId,
    };
    if (start.idstr === 'ram') {
      s.zeroPages = 0;
      s.normalPages = 0;
      for (;;) {
        const rec = await ramDecoder.readRecord(r);
        if (rec === RAM_SAVE_FLAG_EOS) break;
        if (rec === RAM_SAVE_FLAG_MEM_SIZE) {
          const main = ramDecoder.blocks.find((b) => b.idstr === 'ram');
          ram = Buffer.alloc(main?.usedLength ?? 0);
        } else if (rec === RAM_SAVE_FLAG_ZERO) {
          s.zeroPages++;
          if (ramDecoder.block === 'ram') {
            ram.fill(ramDecoder.fill, ramDecoder.offset, ramDecoder.offset + ramDecoder.pageSize);
          }
        } else if (rec === RAM_SAVE_FLAG_PAGE) {
          s.normalPages++;
          const dst =
            ramDecoder.block === 'ram'
              ? ram.subarray(ramDecoder.offset, ramDecoder.offset + ramDecoder.pageSize)
              : page;
          if (!r.tryReadInto(dst)) await r.readInto(dst, 'ram page');
        }
      }
    } else if (h.type === QEMU_VM_SECTION_FULL) {
      const known = QEMU72_FULL_SECTIONS[h.idstr];
      if (known === undefined) throw badInput(at, 'section', `no layout known for '${h.idstr}'`);
      s.payload = await r.getBytes(known.size, `${h.idstr} payload`, known.size);
    } else {
      throw badInput(at, 'section', `unexpected ${kind} section for '${start.idstr}'`);
    }
    await readSectionFooter(r, h.sectionId, start.idstr);
    sections.push(s);
  }
}
