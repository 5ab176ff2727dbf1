/**
 * Decodes a whole main-channel stream (qemu-migration.md §1.1) with the stream codec: header,
 * configuration, every section through its entry's payload decoder, commands, EOF, vmdesc.
 * Decoding never throws on bad input: it stops at the first problem and the report holds
 * everything read before it, plus the error with its offset.
 */
import {
  MIG_CMD_PACKAGED,
  MIG_CMD_PING,
  QEMU_VM_COMMAND,
  QEMU_VM_CONFIGURATION,
  QEMU_VM_EOF,
  QEMU_VM_FILE_VERSION,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  StreamError,
  badInput,
  isStreamError,
  parseVmdesc,
  readCommand,
  readConfiguration,
  readFileHeader,
  readSectionFooter,
  readSectionHeader,
  readSectionType,
  readVmdesc,
} from '../migration/stream/index.ts';
import type {
  MigrationConfiguration,
  QEMUFileReader,
  SectionHeader,
  SectionStartHeader,
} from '../migration/stream/index.ts';
import type { EntryDecoder } from './entry.ts';
import { entryDecoderFor } from './formats.ts';
import { RamEntryDecoder } from './payload/ram.ts';
import { vfioDeviceTotals } from './payload/vfio.ts';
import type {
  ByteTotals,
  InspectError,
  InspectReport,
  InspectedConfiguration,
  InspectedItem,
  InspectedSection,
  InspectedVmdesc,
  SectionKind,
} from './report.ts';

const SECTION_KIND: Readonly<Record<SectionHeader['type'], SectionKind>> = {
  [QEMU_VM_SECTION_START]: 'START',
  [QEMU_VM_SECTION_PART]: 'PART',
  [QEMU_VM_SECTION_END]: 'END',
  [QEMU_VM_SECTION_FULL]: 'FULL',
};

/** One entry as bound by a START or FULL header, with the sections seen for it. */
interface Entry {
  header: SectionStartHeader;
  decoder: EntryDecoder | null;
  /** Why there is no decoder. */
  problem: string;
  sections: InspectedSection[];
  bytes: number;
}

/** Reads `r` to its end (or to the first problem) and reports what it holds. */
export async function inspectStream(r: QEMUFileReader): Promise<InspectReport> {
  const inspection = new Inspection();
  let error: InspectError | null = null;
  try {
    await inspection.run(r);
  } catch (err) {
    error = inspectError(err, r.offset);
  }
  return inspection.report(r.offset, error);
}

class Inspection {
  private version: number | null = null;
  private configuration: MigrationConfiguration | null = null;
  private readonly items: InspectedItem[] = [];
  private eof: number | null = null;
  private vmdesc: InspectedVmdesc | null = null;
  /** Bound entries by section id, and every entry ever bound, in stream order. */
  private readonly bound = new Map<number, Entry>();
  private readonly entries: Entry[] = [];
  private readonly bytes: ByteTotals = {
    header: 0,
    START: 0,
    PART: 0,
    END: 0,
    FULL: 0,
    command: 0,
    eof: 0,
    vmdesc: 0,
    trailing: 0,
  };

  async run(r: QEMUFileReader): Promise<void> {
    await readFileHeader(r);
    this.version = QEMU_VM_FILE_VERSION;
    this.bytes.header = r.offset;
    // send-configuration may be off on the source; then sections follow the header directly.
    if ((await r.peekU8('configuration section type')) === QEMU_VM_CONFIGURATION) {
      this.configuration = await readConfiguration(r);
      this.bytes.header = r.offset;
    }
    for (;;) {
      const at = r.offset;
      const type = await readSectionType(r);
      if (type === QEMU_VM_EOF) {
        this.eof = at;
        this.bytes.eof = 1;
        await this.readTrailer(r);
        return;
      }
      if (type === QEMU_VM_COMMAND) await this.readCommandItem(r, at);
      else await this.readSectionItem(r, type, at);
    }
  }

  private async readCommandItem(r: QEMUFileReader, at: number): Promise<void> {
    const c = await readCommand(r);
    const value =
      c.type === MIG_CMD_PING || c.type === MIG_CMD_PACKAGED ? c.data.readUInt32BE(0) : null;
    // A PACKAGED blob (postcopy only) is a nested stream: counted with its command, not decoded.
    if (c.type === MIG_CMD_PACKAGED) await r.skip(value!, `PACKAGED blob of ${value} bytes`);
    const length = r.offset - at;
    this.bytes.command += length;
    this.items.push({
      item: 'command',
      offset: at,
      length,
      cmd: c.type,
      name: c.name,
      value,
      dataLength: c.data.length,
    });
  }

  private async readSectionItem(
    r: QEMUFileReader,
    type: SectionHeader['type'],
    at: number,
  ): Promise<void> {
    const h = await readSectionHeader(r, type);
    const kind = SECTION_KIND[h.type];
    const entry = 'idstr' in h ? this.bind(h) : this.bound.get(h.sectionId);
    if (entry === undefined) {
      throw badInput(
        at,
        'section header',
        `${kind} section id ${h.sectionId} was not opened by a START or FULL section`,
      );
    }
    const { idstr, instanceId, versionId } = entry.header;
    const item: InspectedSection = {
      item: 'section',
      offset: at,
      length: 0,
      type: kind,
      sectionId: h.sectionId,
      idstr,
      instanceId,
      versionId,
      payload: null,
      complete: false,
    };
    this.items.push(item);
    entry.sections.push(item);
    try {
      const decoder = entry.decoder;
      if (decoder === null) {
        throw new StreamError(
          `cannot decode section '${idstr}' (id ${h.sectionId}) at offset ${at}: ${entry.problem}`,
          at,
          'section payload',
        );
      }
      const payload = decoder.begin();
      item.payload = payload;
      try {
        await decoder.decodeSection(r, kind, payload);
      } catch (err) {
        const context = `section '${idstr}' (id ${h.sectionId})`;
        if (isStreamError(err)) throw err.withContext(context);
        // A layout check of the core (e.g. an unknown run state) names no offset: add it.
        throw badInput(r.offset, context, err instanceof Error ? err.message : String(err));
      }
      await readSectionFooter(r, h.sectionId, `'${idstr}'`);
      item.complete = true;
    } finally {
      item.length = r.offset - at;
      this.bytes[kind] += item.length;
      entry.bytes += item.length;
    }
  }

  /** START/FULL: the entry for this header, rebinding the section id if it named another. */
  private bind(h: SectionStartHeader): Entry {
    const old = this.bound.get(h.sectionId);
    if (
      old !== undefined &&
      old.header.idstr === h.idstr &&
      old.header.instanceId === h.instanceId &&
      old.header.versionId === h.versionId
    ) {
      return old;
    }
    let decoder: EntryDecoder | null = null;
    let problem = '';
    try {
      const d = entryDecoderFor(h, this.configuration);
      if (typeof d === 'string') problem = d;
      else decoder = d;
    } catch (err) {
      problem = err instanceof Error ? err.message : String(err);
    }
    const entry: Entry = { header: h, decoder, problem, sections: [], bytes: 0 };
    this.bound.set(h.sectionId, entry);
    this.entries.push(entry);
    return entry;
  }

  /** After EOF: the optional vmdesc, then whatever else the file holds. */
  private async readTrailer(r: QEMUFileReader): Promise<void> {
    const at = r.offset;
    const json = await readVmdesc(r);
    if (json !== null) {
      this.bytes.vmdesc = r.offset - at;
      this.vmdesc = { offset: at, length: r.offset - at, desc: parseVmdesc(json, at) };
    }
    while (!(await r.atEnd())) {
      const n = r.available();
      r.trySkip(n);
      this.bytes.trailing += n;
    }
  }

  report(size: number, error: InspectError | null): InspectReport {
    const cfg = this.configuration;
    const configuration: InspectedConfiguration | null =
      cfg === null
        ? null
        : {
            machineType: cfg.machineType,
            targetPageBits: cfg.targetPageBits ?? null,
            capabilities: [...(cfg.capabilities ?? [])],
            uuid: cfg.uuid === undefined ? null : Buffer.from(cfg.uuid).toString('hex'),
          };
    const ram = this.entries.find((e) => e.decoder instanceof RamEntryDecoder);
    const sections: Record<SectionKind, number> = { START: 0, PART: 0, END: 0, FULL: 0 };
    for (const e of this.entries) for (const s of e.sections) sections[s.type]++;
    return {
      size,
      version: this.version,
      configuration,
      items: this.items,
      eof: this.eof,
      vmdesc: this.vmdesc,
      totals: {
        ram: ram === undefined ? null : (ram.decoder as RamEntryDecoder).totals(),
        vfio: this.entries
          .filter((e) => e.decoder?.format === 'vfio')
          .map((e) => vfioDeviceTotals(e.header, e.sections)),
        sections,
        bytes: { ...this.bytes },
        entries: this.entries.map((e) => ({
          idstr: e.header.idstr,
          instanceId: e.header.instanceId,
          sectionId: e.header.sectionId,
          format: e.decoder?.format ?? null,
          sections: e.sections.length,
          bytes: e.bytes,
        })),
      },
      error,
    };
  }
}

/** Every stopping reason as a message that names the offset. */
function inspectError(err: unknown, offset: number): InspectError {
  if (isStreamError(err)) return { message: err.message, offset: err.offset };
  const reason = err instanceof Error ? err.message : String(err);
  return { message: `at offset ${offset}: ${reason}`, offset };
}
