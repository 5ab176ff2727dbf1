/**
 * Synthetic migration streams for the inspect tests, written with the stream writer: sections
 * with their footers, commands, EOF and vmdesc, RAM records through the RAM encoder and VFIO
 * sub-streams as QEMU's save hooks write them (qemu-migration.md §1.4, §4.6).
 */
import {
  MemorySink,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  QEMUFileReader,
  QEMUFileWriter,
  VFIO_MIG_FLAG_DEV_CONFIG_LOAD_READY,
  VFIO_MIG_FLAG_DEV_CONFIG_STATE,
  VFIO_MIG_FLAG_DEV_DATA_STATE,
  VFIO_MIG_FLAG_DEV_INIT_DATA_SENT,
  VFIO_MIG_FLAG_DEV_SETUP_STATE,
  VFIO_MIG_FLAG_END_OF_STATE,
  putCommand,
  putConfiguration,
  putEof,
  putFileHeader,
  putSectionFooter,
  putSectionHeader,
  putVmdesc,
} from '../../src/migration/stream/index.ts';
import type { MigrationConfiguration, Vmdesc } from '../../src/migration/stream/index.ts';
import { inspectStream } from '../../src/inspect/index.ts';
import type { InspectReport } from '../../src/inspect/index.ts';

type Payload = (w: QEMUFileWriter) => void;

/** Builds a stream and remembers where each item starts. */
export class StreamBuilder {
  readonly w: QEMUFileWriter;
  private readonly sink = new MemorySink();
  /** Offset of every item put, in order (sections, commands, EOF, vmdesc). */
  readonly offsets: number[] = [];

  constructor() {
    this.w = new QEMUFileWriter(this.sink, { chunkSize: 4096, poolSize: 1 << 20 });
  }

  header(cfg: MigrationConfiguration = { machineType: 'pc-q35-7.2' }): this {
    putFileHeader(this.w);
    putConfiguration(this.w, cfg);
    return this;
  }

  start(
    sectionId: number,
    idstr: string,
    payload: Payload,
    instanceId = 0,
    versionId?: number,
  ): this {
    return this.named(QEMU_VM_SECTION_START, sectionId, idstr, payload, instanceId, versionId);
  }

  full(
    sectionId: number,
    idstr: string,
    payload: Payload,
    instanceId = 0,
    versionId?: number,
  ): this {
    return this.named(QEMU_VM_SECTION_FULL, sectionId, idstr, payload, instanceId, versionId);
  }

  part(sectionId: number, payload: Payload): this {
    return this.section(QEMU_VM_SECTION_PART, sectionId, payload);
  }

  end(sectionId: number, payload: Payload): this {
    return this.section(QEMU_VM_SECTION_END, sectionId, payload);
  }

  command(cmd: number, data?: Uint8Array): this {
    this.mark();
    putCommand(this.w, cmd, data);
    return this;
  }

  eof(vmdesc?: Vmdesc): this {
    this.mark();
    putEof(this.w);
    if (vmdesc !== undefined) {
      this.mark();
      putVmdesc(this.w, vmdesc);
    }
    return this;
  }

  /** Any bytes, e.g. a damaged item. */
  raw(put: Payload): this {
    put(this.w);
    return this;
  }

  get offset(): number {
    return this.w.bytesWritten;
  }

  async bytes(): Promise<Buffer> {
    await this.w.flush();
    return this.sink.bytes();
  }

  private named(
    type: typeof QEMU_VM_SECTION_START | typeof QEMU_VM_SECTION_FULL,
    sectionId: number,
    idstr: string,
    payload: Payload,
    instanceId: number,
    versionId = idstr === 'ram' ? 4 : 1,
  ): this {
    this.mark();
    putSectionHeader(this.w, { type, sectionId, idstr, instanceId, versionId });
    payload(this.w);
    putSectionFooter(this.w, sectionId);
    return this;
  }

  private section(
    type: typeof QEMU_VM_SECTION_PART | typeof QEMU_VM_SECTION_END,
    sectionId: number,
    payload: Payload,
  ): this {
    this.mark();
    putSectionHeader(this.w, { type, sectionId });
    payload(this.w);
    putSectionFooter(this.w, sectionId);
    return this;
  }

  private mark(): void {
    this.offsets.push(this.w.bytesWritten);
  }
}

/** VFIO sub-stream records (qemu-migration.md §1.3), combined as the save hooks combine them. */
export const vfio = {
  /** save_setup: always exactly these 16 bytes. */
  setup: (w: QEMUFileWriter): void => {
    w.putBe64(VFIO_MIG_FLAG_DEV_SETUP_STATE);
    w.putBe64(VFIO_MIG_FLAG_END_OF_STATE);
  },
  data: (w: QEMUFileWriter, size: number, fill = 0xa5): void => {
    w.putBe64(VFIO_MIG_FLAG_DEV_DATA_STATE);
    w.putBe64(size);
    w.putBuffer(Buffer.alloc(size, fill));
  },
  endOfState: (w: QEMUFileWriter): void => w.putBe64(VFIO_MIG_FLAG_END_OF_STATE),
  initDataSent: (w: QEMUFileWriter): void => w.putBe64(VFIO_MIG_FLAG_DEV_INIT_DATA_SENT),
  /** save_state: DEV_CONFIG_STATE, the blob (u32 length + bytes), END_OF_STATE. */
  config: (w: QEMUFileWriter, size: number): void => {
    w.putBe64(VFIO_MIG_FLAG_DEV_CONFIG_STATE);
    w.putBe32(size);
    w.putBuffer(Buffer.alloc(size, 0x3c));
    w.putBe64(VFIO_MIG_FLAG_END_OF_STATE);
  },
  configLoadReady: (w: QEMUFileWriter): void => w.putBe64(VFIO_MIG_FLAG_DEV_CONFIG_LOAD_READY),
} as const;

/** Decodes `bytes` from memory. */
export function inspectBytes(bytes: Uint8Array): Promise<InspectReport> {
  const r = new QEMUFileReader();
  r.push(bytes);
  r.end();
  return inspectStream(r);
}
