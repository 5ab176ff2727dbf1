/**
 * The mtty sample driver (vfio-uapi.md §9.1) as a simulated device: a few 16550-like ports,
 * a fixed-size image (24-byte header + 36 bytes per port), no DMA. It behaves like
 * samples/vfio-mdev/mtty.c except that a read at the temporary end of PRE_COPY data is ENOMSG
 * (the fd does that), and a resumed image is checked for plausibility before it loads.
 */
import type { Hash } from 'node:crypto';
import { fail } from '../../../uapi/index.ts';
import type { MigState } from '../../../uapi/index.ts';
import type { PciIds } from '../config-space.ts';
import type { DmaEngine } from '../dma.ts';
import type { ResumingStream, SavingStream, SimModel } from '../model.ts';
import { Prng, RateAccumulator } from '../prng.ts';
import { checkPortRecord, PORT_SIZE, uartRead, uartWrite, UartReg } from './uart.ts';

export const MTTY_MAGIC = 0x7e9d09898c3e2c4en;
export const MTTY_MAJOR_VER = 1;
export const MTTY_MINOR_VER = 0;
/** `offsetof(struct mtty_data, ports)`: u64 magic, u32 major, u32 minor, u32 nr_ports, u32 flags. */
export const MTTY_HEADER_SIZE = 24;

/** mtty's PCI identity (vendor 0x4348, device 0x3253: "HCS2"), a 16550 serial controller. */
const MTTY_PCI_IDS: PciIds = {
  vendorId: 0x4348,
  deviceId: 0x3253,
  classCode: 0x070002,
  revision: 0x10,
  msixEntries: 16,
};

export interface MttyModelOptions {
  ports: number;
  /** Guest UART accesses per second while running. */
  activity: number;
  seed: number;
}

export class MttyModel implements SimModel {
  readonly kind = 'mtty';
  readonly pciIds = MTTY_PCI_IDS;
  /**
   * The kernel sample's log ops are no-ops that accept anything, even a second START. The
   * uAPI asks a driver to refuse that (vfio-uapi.md §7), so this mtty keeps a real tracker:
   * misuse is refused like on any device, and since mtty does no DMA every report is clean.
   */
  readonly dmaLogging = 'tracking' as const;
  readonly nrPorts: number;
  /** `mdev_state->s[]`: the ports back to back. */
  readonly ports: Uint8Array;
  readonly #opts: MttyModelOptions;
  #rng: Prng;
  readonly #acc = new RateAccumulator();
  #resuming: MttyResuming | null = null;

  constructor(opts: MttyModelOptions) {
    this.#opts = opts;
    this.nrPorts = opts.ports;
    this.ports = new Uint8Array(opts.ports * PORT_SIZE);
    this.#rng = new Prng(opts.seed);
  }

  /** Header plus every port: what `MIG_DATA_SIZE` reports and STOP_COPY produces. */
  fullStateBytes(): number {
    return MTTY_HEADER_SIZE + this.ports.length;
  }

  port(i: number): Uint8Array {
    if (!Number.isInteger(i) || i < 0 || i >= this.nrPorts) {
      throw new Error(`mtty has ports 0..${this.nrPorts - 1}, not ${i}`);
    }
    return this.ports.subarray(i * PORT_SIZE, (i + 1) * PORT_SIZE);
  }

  /** A guest access to UART register `reg` of port `i` (also what activity does). */
  portWrite(i: number, reg: number, value: number): void {
    uartWrite(this.port(i), reg, value);
  }

  portRead(i: number, reg: number): number {
    return uartRead(this.port(i), reg);
  }

  openSaving(precopy: boolean): SavingStream {
    return new MttySaving(this, precopy);
  }

  openResuming(): ResumingStream {
    this.#resuming = new MttyResuming(this);
    return this.#resuming;
  }

  closeSession(): void {
    this.#resuming = null;
  }

  run(ms: number, _state: MigState, _dma: DmaEngine): void {
    for (let n = this.#acc.take(this.#opts.activity, ms); n > 0; n--) this.#guestAccess();
  }

  powerOn(): void {
    this.ports.fill(0);
    this.#rng = new Prng(this.#opts.seed);
    this.#acc.reset();
  }

  /**
   * The sample loads the ports only at RESUMING -> STOP; while a complete image waits in
   * RESUMING (a destination paused after the load), the digest is that of the state it will
   * load, so a paused destination can be compared with its source.
   */
  digest(hash: Hash): void {
    hash.update(this.#resuming?.completePorts() ?? this.ports);
  }

  /** Header of the image for this device. */
  header(): Uint8Array {
    const h = new Uint8Array(MTTY_HEADER_SIZE);
    const dv = new DataView(h.buffer);
    dv.setBigUint64(0, MTTY_MAGIC, true);
    dv.setUint32(8, MTTY_MAJOR_VER, true);
    dv.setUint32(12, MTTY_MINOR_VER, true);
    dv.setUint32(16, this.nrPorts, true);
    dv.setUint32(20, 0, true);
    return h;
  }

  /** One random guest access of the kind a serial console makes. */
  #guestAccess(): void {
    const i = this.#rng.below(this.nrPorts);
    const r = this.#rng.nextU32();
    switch (r % 8) {
      case 0:
      case 1:
      case 2:
        this.portWrite(i, UartReg.TX, r >>> 8);
        break;
      case 3:
      case 4:
        this.portRead(i, UartReg.TX);
        break;
      case 5:
        this.portWrite(i, UartReg.SCR, r >>> 8);
        break;
      case 6:
        this.portWrite(i, UartReg.IER, (r >>> 8) & 0x0f);
        break;
      default:
        // FIFO on, sometimes cleared.
        this.portWrite(i, UartReg.FCR, (r >>> 8) & 0x100 ? 0x07 : 0x01);
        break;
    }
  }
}

/** `mtty_save_device_data`: the header at session start, the ports at STOP_COPY. */
class MttySaving implements SavingStream {
  readonly #model: MttyModel;
  readonly #data: Uint8Array;
  #filled: number;
  #pos = 0;

  constructor(model: MttyModel, precopy: boolean) {
    this.#model = model;
    this.#data = new Uint8Array(model.fullStateBytes());
    this.#data.set(model.header());
    this.#filled = MTTY_HEADER_SIZE;
    if (!precopy) this.enterStopCopy();
  }

  read(buf: Uint8Array): number {
    const n = Math.min(this.#filled - this.#pos, buf.length);
    buf.set(this.#data.subarray(this.#pos, this.#pos + n));
    this.#pos += n;
    return n;
  }

  /** initial_bytes = written - read; mtty never has dirty bytes. */
  precopyInfo(): { initialBytes: number; dirtyBytes: number } {
    return { initialBytes: this.#filled - this.#pos, dirtyBytes: 0 };
  }

  enterStopCopy(): void {
    if (this.#filled !== MTTY_HEADER_SIZE) return;
    this.#data.set(this.#model.ports, MTTY_HEADER_SIZE);
    this.#filled = this.#data.length;
  }

  remainingBytes(): number {
    return this.#data.length - this.#pos;
  }
}

/** `mtty_resume_write` and the RESUMING -> STOP load. */
class MttyResuming implements ResumingStream {
  readonly #model: MttyModel;
  readonly #data: Uint8Array;
  #filled = 0;
  #headerError: string | null = null;

  constructor(model: MttyModel) {
    this.#model = model;
    this.#data = new Uint8Array(model.fullStateBytes());
  }

  write(buf: Uint8Array): number {
    if (this.#filled + buf.length > this.#data.length) {
      fail(
        'ENOMEM',
        `mtty resume: ${this.#filled + buf.length} bytes written, the image is ${this.#data.length}`,
      );
    }
    this.#data.set(buf, this.#filled);
    const before = this.#filled;
    this.#filled += buf.length;
    if (before < MTTY_HEADER_SIZE && this.#filled >= MTTY_HEADER_SIZE) {
      this.#headerError = this.#checkHeader();
      // The sample answers a bad header with EFAULT (a quirk, vfio-uapi.md §6.3).
      if (this.#headerError) fail('EFAULT', `mtty resume: ${this.#headerError}`);
    }
    return 0;
  }

  /** The port state a complete, well-formed image would load, or null. */
  completePorts(): Uint8Array | null {
    if (this.#filled < this.#data.length || this.#headerError) return null;
    return this.#data.subarray(MTTY_HEADER_SIZE);
  }

  finish(): void {
    if (this.#filled < this.#data.length) {
      fail('EINVAL', `mtty resume: ${this.#filled} of ${this.#data.length} image bytes written`);
    }
    if (this.#headerError) fail('EINVAL', `mtty resume: ${this.#headerError}`);
    const ports = this.#data.subarray(MTTY_HEADER_SIZE);
    for (let i = 0; i < this.#model.nrPorts; i++) {
      const why = checkPortRecord(ports.subarray(i * PORT_SIZE, (i + 1) * PORT_SIZE));
      if (why) fail('EINVAL', `mtty resume: port ${i} record is implausible: ${why}`);
    }
    this.#model.ports.set(ports);
  }

  #checkHeader(): string | null {
    const dv = new DataView(this.#data.buffer, 0, MTTY_HEADER_SIZE);
    const magic = dv.getBigUint64(0, true);
    if (magic !== MTTY_MAGIC) return `bad magic 0x${magic.toString(16)}`;
    const major = dv.getUint32(8, true);
    const minor = dv.getUint32(12, true);
    if (major !== MTTY_MAJOR_VER || minor !== MTTY_MINOR_VER)
      return `version ${major}.${minor} is not 1.0`;
    const ports = dv.getUint32(16, true);
    if (ports !== this.#model.nrPorts)
      return `image has ${ports} ports, this device ${this.#model.nrPorts}`;
    if (dv.getUint32(20, true) !== 0) return 'header flags are not 0';
    return null;
  }
}
