/**
 * What `inspect` learns from a migration stream: every item in stream order, the trailer, and
 * totals. The report is plain data (numbers, strings, arrays), so `JSON.stringify` is its JSON
 * form. Offsets are byte offsets from the start of the stream (the `QEVM` magic).
 */
import type { RamBlockInfo } from '../migration/ram/format.ts';
import type { Vmdesc } from '../migration/stream/index.ts';

export type SectionKind = 'START' | 'PART' | 'END' | 'FULL';

/** Payload of a `ram` section (qemu-migration.md §1.1, migration/ram/format.ts). */
export interface RamPayload {
  format: 'ram';
  /** MEM_SIZE record (START only): total RAM size and the block list. */
  memSize: number | null;
  blocks: RamBlockInfo[] | null;
  /** PAGE records (page bytes are skipped, not kept). */
  pages: number;
  /** ZERO records. */
  zeroPages: number;
  /** MULTIFD_FLUSH records: with multifd, the pages themselves travel on other channels. */
  multifdFlushes: number;
}

/** What ended a VFIO section (qemu-migration.md §1.5: the three tags after which load returns). */
export type VfioSectionEnd = 'END_OF_STATE' | 'DEV_INIT_DATA_SENT' | 'DEV_CONFIG_LOAD_READY';

/** Payload of a VFIO device section: its VFIO_MIG_FLAG_* records (qemu-migration.md §1.3–§1.5). */
export interface VfioPayload {
  format: 'vfio';
  /** DEV_SETUP_STATE + END_OF_STATE (save_setup, §1.4). */
  setup: boolean;
  /** DEV_DATA_STATE records and the device bytes they carried (skipped, not kept). */
  dataRecords: number;
  dataBytes: number;
  /** DEV_CONFIG_STATE: size of the config blob, or null when none was sent. */
  configBytes: number | null;
  /** The tag that ended the section; null while it has not been read. */
  end: VfioSectionEnd | null;
}

/** `globalstate` v1: u32 size + 100-byte run-state name (the source's run state). */
export interface GlobalStatePayload {
  format: 'globalstate';
  runState: string;
}

/** `timer`: i64 cpu_ticks_offset, 8 unused bytes, i64 cpu_clock_offset (v2), as decimal strings. */
export interface TimerPayload {
  format: 'timer';
  cpuTicksOffset: string;
  /** null in a version 1 section. */
  cpuClockOffset: string | null;
}

/** `viommu` v1: the guest IOMMU's mappings as one counted buffer. */
export interface ViommuPayload {
  format: 'viommu';
  bytes: number;
  /** null when the buffer does not hold a well-formed mapping list. */
  mappings: number | null;
}

export type PayloadSummary =
  RamPayload | VfioPayload | GlobalStatePayload | TimerPayload | ViommuPayload;
export type PayloadFormat = PayloadSummary['format'];

export interface InspectedSection {
  item: 'section';
  /** Offset of the section type byte. */
  offset: number;
  /** Bytes from the type byte to the end of the footer (or to where decoding stopped). */
  length: number;
  type: SectionKind;
  sectionId: number;
  /** The entry, from this section's header (START/FULL) or from the START that bound its id. */
  idstr: string;
  instanceId: number;
  versionId: number;
  /** null when no decoder knows this entry's payload. */
  payload: PayloadSummary | null;
  /** False only for the section decoding stopped in. */
  complete: boolean;
}

export interface InspectedCommand {
  item: 'command';
  offset: number;
  length: number;
  cmd: number;
  /** "OPEN_RETURN_PATH", "PING", ... */
  name: string;
  /** PING value, PACKAGED blob length. */
  value: number | null;
  dataLength: number;
}

export type InspectedItem = InspectedSection | InspectedCommand;

export interface InspectedConfiguration {
  machineType: string;
  targetPageBits: number | null;
  capabilities: string[];
  /** Hex, as in the stream (16 bytes). */
  uuid: string | null;
}

export interface RamBlockTotals {
  idstr: string;
  usedLength: number;
  pages: number;
  zeroPages: number;
}

export interface RamTotals {
  pageSize: number;
  blocks: RamBlockTotals[];
  pages: number;
  zeroPages: number;
  /** pages × page size: guest bytes that crossed the main channel. */
  pageBytes: number;
  multifdFlushes: number;
}

export interface VfioDeviceTotals {
  idstr: string;
  instanceId: number;
  sectionId: number;
  sections: number;
  dataRecords: number;
  dataBytes: number;
  configSent: boolean;
  configBytes: number;
  /** DEV_INIT_DATA_SENT records (one per precopy "initial bytes" round, §1.6). */
  initDataSent: number;
  configLoadReady: boolean;
}

/** Stream bytes by what they framed; the values add up to `InspectReport.size`. */
export interface ByteTotals {
  /** File header and configuration section. */
  header: number;
  START: number;
  PART: number;
  END: number;
  FULL: number;
  command: number;
  eof: number;
  vmdesc: number;
  /** Bytes after EOF that are no vmdesc. */
  trailing: number;
}

export interface EntryTotals {
  idstr: string;
  instanceId: number;
  sectionId: number;
  format: PayloadFormat | null;
  sections: number;
  bytes: number;
}

export interface InspectTotals {
  ram: RamTotals | null;
  vfio: VfioDeviceTotals[];
  sections: Record<SectionKind, number>;
  bytes: ByteTotals;
  entries: EntryTotals[];
}

export interface InspectedVmdesc {
  offset: number;
  /** Marker, length and JSON. */
  length: number;
  desc: Vmdesc;
}

export interface InspectError {
  message: string;
  offset: number;
}

export interface InspectReport {
  /** Bytes decoded (all of them when `error` is null). */
  size: number;
  /** QEMU_VM_FILE_VERSION once the header was read. */
  version: number | null;
  configuration: InspectedConfiguration | null;
  items: InspectedItem[];
  /** Offset of QEMU_VM_EOF. */
  eof: number | null;
  vmdesc: InspectedVmdesc | null;
  totals: InspectTotals;
  /** Why decoding stopped before the end; everything above is what came before it. */
  error: InspectError | null;
}
