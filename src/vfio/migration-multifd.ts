/**
 * A VFIO device's state over multifd channels (QEMU's hw/vfio/migration-multifd.c;
 * qemu-migration.md §4.2, §4.4, §4.5), in place of the main channel's DEV_DATA_STATE records
 * and config during the switchover:
 *
 *   source       `saveMultifdState`, the device's precopy-thread job: STOP_COPY, then each
 *                read of the data fd as a `VFIODeviceStatePacket` (version 0, idx 0, 1, ...),
 *                and last the config sub-stream as a packet flagged CONFIG_STATE
 *   destination  `VfioMultifdLoad`: packets from any channel, in any order, are kept by idx
 *                (a duplicate, a bad version, a bad idx refused; their bytes capped by
 *                `x-migration-max-queued-buffers-size`); its load thread, started by
 *                SWITCHOVER_START, writes them to the resuming fd strictly in idx order, then
 *                loads the config — once DEV_CONFIG_LOAD_READY came when the config is loaded
 *                after the iterables (ARM's rule)
 *
 * Where QEMU uses a mutex and condition variables, tasks on one event loop need a wake-up:
 * `#wake` resolves whoever waits for a buffer or for DEV_CONFIG_LOAD_READY.
 */
import type { DataFd } from '../device/device.ts';
import { wallClockMs } from '../migration/downtime-trace.ts';
import type { PrecopyThreadJob } from '../migration/savevm/handlers.ts';
import {
  MemorySink,
  QEMUFileReader,
  QEMUFileWriter,
  VFIO_DEVICE_STATE_CONFIG_STATE,
  VFIO_DEVICE_STATE_IDX_INVALID,
  VFIO_DEVICE_STATE_PACKET_HDR_SIZE,
  VFIO_DEVICE_STATE_PACKET_VER_CURRENT,
  VFIO_MIG_FLAG_DEV_CONFIG_STATE,
} from '../migration/stream/index.ts';
import { errorMessage } from './error-message.ts';
import { tagName, writeToFd } from './records.ts';

const HDR = VFIO_DEVICE_STATE_PACKET_HDR_SIZE;

/** A data packet's header: version, idx, no flags. */
function putPacketHeader(packet: Buffer, idx: number): void {
  packet.writeUInt32BE(VFIO_DEVICE_STATE_PACKET_VER_CURRENT, 0);
  packet.writeUInt32BE(idx, 4);
  packet.writeUInt32BE(0, 8);
}

// --- source ---------------------------------------------------------------------------------

/** What the precopy-thread job needs of the device's migration. */
export interface MultifdSaveDevice {
  readonly name: string;
  /** The saving data fd, STOP_COPY reached (`vfio_migration_set_state(STOP_COPY, STOP)`). */
  enterStopCopy(): Promise<DataFd>;
  /** `data_buffer_size`: the most one read asks for. */
  readonly dataBufferSize: number;
  /** `DEV_CONFIG_STATE`, the config, `END_OF_STATE` (`vfio_save_device_config_state`). */
  saveConfig(f: QEMUFileWriter): Promise<void>;
  /** A packet of `bytes` (header included) went out; `data` of them were device data. */
  sent(bytes: number, data: number): void;
}

/**
 * Packets of one device a job keeps in flight: while the channels write some, the job reads
 * the next from the device into another (QEMU's thread gets the same overlap from the
 * channel threads copying its buffer). Each is written in place, never copied.
 */
const PACKETS_IN_FLIGHT = 3;

/** `vfio_multifd_save_complete_precopy_thread`. */
export async function saveMultifdState(job: PrecopyThreadJob, d: MultifdSaveDevice): Promise<void> {
  const fd = await d.enterStopCopy();
  const ring = new PacketRing(HDR + d.dataBufferSize);
  let idx = 0;
  try {
    for (; ; idx++) {
      if (job.signal.aborted) throw new Error('operation cancelled');
      const packet = await ring.free();
      let n: number;
      try {
        n = await fd.read(packet.subarray(HDR));
      } catch (err) {
        throw new Error(`${d.name}: reading state buffer ${idx} failed: ${errorMessage(err)}`, {
          cause: err,
        });
      }
      if (n === 0) break;
      putPacketHeader(packet, idx);
      ring.send(queue(job, packet.subarray(0, HDR + n), `${d.name}: multifd data queuing failed`));
      d.sent(HDR + n, n);
    }
    await ring.drain();
  } finally {
    // Nothing is left writing from a buffer once the job ends, even when it fails.
    await ring.settled();
  }
  // The config is the last packet; its idx tells the destination where the data ends.
  const sink = new MemorySink();
  const f = new QEMUFileWriter(sink, { chunkSize: 64 << 10 });
  f.putBe32(VFIO_DEVICE_STATE_PACKET_VER_CURRENT);
  f.putBe32(idx);
  f.putBe32(VFIO_DEVICE_STATE_CONFIG_STATE);
  await d.saveConfig(f);
  await f.flush();
  const last = sink.bytes();
  await queue(job, last, `${d.name}: multifd config data queuing failed`);
  d.sent(last.length, 0);
}

/**
 * `PACKETS_IN_FLIGHT` packet buffers, each lent to a channel until it was written. The first
 * failed write is thrown by the next `free` or by `drain`.
 */
class PacketRing {
  readonly #buffers: Buffer[];
  /** Each buffer's last write; its failure is kept in `#failure`, so these never reject. */
  readonly #writes: Promise<void>[] = new Array<Promise<void>>(PACKETS_IN_FLIGHT).fill(
    Promise.resolve(),
  );
  #turn = 0;
  #failure: { error: unknown } | null = null;

  constructor(size: number) {
    this.#buffers = Array.from({ length: PACKETS_IN_FLIGHT }, () => Buffer.allocUnsafe(size));
  }

  /** The next buffer, once the write that last used it is over. */
  async free(): Promise<Buffer> {
    const slot = this.#turn++ % PACKETS_IN_FLIGHT;
    await this.#writes[slot];
    this.#throwIfFailed();
    return this.#buffers[slot]!;
  }

  /** The write of the buffer `free` last gave. */
  send(write: Promise<void>): void {
    const slot = (this.#turn - 1) % PACKETS_IN_FLIGHT;
    this.#writes[slot] = write.catch((error: unknown) => {
      this.#failure ??= { error };
    });
  }

  /** Every write over; throws the first that failed. */
  async drain(): Promise<void> {
    await this.settled();
    this.#throwIfFailed();
  }

  /** Every write over, failed or not. */
  async settled(): Promise<void> {
    await Promise.all(this.#writes);
  }

  #throwIfFailed(): void {
    if (this.#failure !== null) throw this.#failure.error;
  }
}

async function queue(job: PrecopyThreadJob, packet: Uint8Array, what: string): Promise<void> {
  try {
    await job.queueDeviceState(packet);
  } catch (err) {
    throw new Error(`${what}: ${errorMessage(err)}`, { cause: err });
  }
}

// --- destination ----------------------------------------------------------------------------

/** What the load thread needs of the device's migration. */
export interface MultifdLoadDevice {
  readonly name: string;
  /** The resuming data fd (throws when the device is not resuming). */
  resumingFd(): DataFd;
  /** `vfio_load_device_config_state` on what follows DEV_CONFIG_STATE, END_OF_STATE included. */
  loadConfig(f: QEMUFileReader): Promise<void>;
}

export interface MultifdLoadFigures {
  /** Packets taken (data and config). */
  packets: number;
  /** Most bytes queued at once, waiting for the device. */
  peakQueuedBytes: number;
  /** Packets that came after one with a higher idx (the channels reordered them). */
  outOfOrder: number;
  /** The config was loaded; after DEV_CONFIG_LOAD_READY, when that was awaited. */
  configLoaded: boolean;
  /** How long loading the config took, in ms (where the load thread's time goes). */
  configLoadMs: number;
  /**
   * When DEV_CONFIG_LOAD_READY came, the last data buffer was written and the config was
   * loaded: wall-clock ms on x-query-downtime's clock (null: not, or not yet), so that the
   * order of the config against the iterables' END sections shows (§4.5).
   */
  loadReadyAt: number | null;
  dataLoadedAt: number | null;
  configLoadedAt: number | null;
}

/** A packet's data, and how to give the channel's buffer back once it was written. */
interface HeldBuffer {
  readonly bytes: Buffer;
  readonly release: () => void;
}

/** `VFIOMultifd`: one device's incoming packets and its load thread. */
export class VfioMultifdLoad {
  readonly #d: MultifdLoadDevice;
  /** Buffers present and not yet written, by idx (`load_bufs`), each lent by its channel. */
  readonly #buffers = new Map<number, HeldBuffer>();
  /** `load_buf_idx`: the next to write; every idx below it was written. */
  #next = 0;
  /** `load_buf_idx_last`: the config packet's idx, once it came. */
  #last = VFIO_DEVICE_STATE_IDX_INVALID;
  /** The highest idx seen, to refuse data after the config. */
  #highest = -1;
  #queued = 0;
  readonly #max: number;
  readonly #maxText: string;
  /** The config waits for DEV_CONFIG_LOAD_READY (`vfio_load_config_after_iter`). */
  readonly #configAfterIter: boolean;
  #iterDone = false;
  #running: Promise<void> | null = null;
  #wakeUp: (() => void) | null = null;
  readonly figures: MultifdLoadFigures = {
    packets: 0,
    peakQueuedBytes: 0,
    outOfOrder: 0,
    configLoaded: false,
    configLoadMs: 0,
    loadReadyAt: null,
    dataLoadedAt: null,
    configLoadedAt: null,
  };

  /** `maxQueued` is x-migration-max-queued-buffers-size (2^64-1: unlimited). */
  constructor(d: MultifdLoadDevice, maxQueued: bigint, configAfterIter: boolean) {
    this.#d = d;
    this.#max = maxQueued >= BigInt(Number.MAX_SAFE_INTEGER) ? Infinity : Number(maxQueued);
    this.#maxText = maxQueued.toString();
    this.#configAfterIter = configAfterIter;
  }

  /**
   * `vfio_multifd_load_state_buffer` + `vfio_load_state_buffer_insert`: keeps one packet, or
   * throws (QEMU's messages, and a few checks of what QEMU asserts). `packet` is lent by the
   * channel: it is kept, not copied, and `release` is called once it was written (or
   * dropped). When this throws, the packet was not kept.
   */
  insert(packet: Buffer, release: () => void = () => undefined): void {
    const name = this.#d.name;
    if (packet.length < HDR) {
      throw new Error(`${name}: packet too short at ${packet.length} (min is ${HDR})`);
    }
    const version = packet.readUInt32BE(0);
    if (version !== VFIO_DEVICE_STATE_PACKET_VER_CURRENT) {
      throw new Error(`${name}: packet has unknown version ${version}`);
    }
    const idx = packet.readUInt32BE(4);
    const flags = packet.readUInt32BE(8);
    if (idx === VFIO_DEVICE_STATE_IDX_INVALID) throw new Error(`${name}: packet index is invalid`);
    if (idx < this.#next || this.#buffers.has(idx)) {
      throw new Error(`${name}: state buffer ${idx} already filled`);
    }
    if ((flags & VFIO_DEVICE_STATE_CONFIG_STATE) !== 0) {
      // The config state packet is the last one in the stream.
      if (this.#last !== VFIO_DEVICE_STATE_IDX_INVALID) {
        throw new Error(
          `${name}: config state buffer ${idx} after config state buffer ${this.#last}`,
        );
      }
      if (this.#highest > idx) {
        throw new Error(`${name}: config state buffer ${idx} before state buffer ${this.#highest}`);
      }
      this.#last = idx;
    } else if (idx > this.#last) {
      throw new Error(`${name}: state buffer ${idx} after config state buffer ${this.#last}`);
    }
    const size = packet.length - HDR;
    if (this.#queued + size > this.#max) {
      throw new Error(
        `${name}: queuing state buffer ${idx} would exceed the size max of ${this.#maxText}`,
      );
    }
    this.#queued += size;
    this.figures.peakQueuedBytes = Math.max(this.figures.peakQueuedBytes, this.#queued);
    this.figures.packets++;
    if (idx < this.#highest) this.figures.outOfOrder++;
    this.#highest = Math.max(this.#highest, idx);
    this.#buffers.set(idx, { bytes: packet.subarray(HDR), release });
    this.#wake();
  }

  /** `vfio_load_state_config_load_ready`: DEV_CONFIG_LOAD_READY on the main channel. */
  configLoadReady(): void {
    const name = this.#d.name;
    if (!this.#configAfterIter) {
      throw new Error(`${name}: got DEV_CONFIG_LOAD_READY but was disabled`);
    }
    if (this.#iterDone) throw new Error(`${name}: duplicate DEV_CONFIG_LOAD_READY`);
    this.#iterDone = true;
    this.figures.loadReadyAt = wallClockMs();
    this.#wake();
  }

  /** `vfio_multifd_switchover_start`: the load thread, for the core's load-thread pool. */
  start(signal: AbortSignal): Promise<void> {
    if (this.#running !== null) {
      return Promise.reject(new Error(`${this.#d.name}: its load thread is already running`));
    }
    const onAbort = () => this.#wake();
    signal.addEventListener('abort', onAbort, { once: true });
    this.#running = this.#thread(signal).finally(() =>
      signal.removeEventListener('abort', onAbort),
    );
    return this.#running;
  }

  /** `vfio_multifd_free`: what is queued is dropped once the thread (if any) has ended. */
  async stop(): Promise<void> {
    await this.#running?.catch(() => undefined);
    for (const b of this.#buffers.values()) b.release();
    this.#buffers.clear();
    this.#queued = 0;
  }

  /** `vfio_load_bufs_thread`. */
  async #thread(signal: AbortSignal): Promise<void> {
    for (;;) {
      if (signal.aborted) throw new Error('operation cancelled');
      const buf = this.#buffers.get(this.#next);
      if (buf === undefined) {
        await this.#waitWake();
        continue;
      }
      if (this.#next === this.#last) break;
      await this.#write(buf.bytes);
      this.#buffers.delete(this.#next);
      buf.release();
      this.#next++;
    }
    this.figures.dataLoadedAt = wallClockMs();
    while (this.#configAfterIter && !this.#iterDone) {
      if (signal.aborted) throw new Error('operation cancelled');
      await this.#waitWake();
    }
    const config = this.#buffers.get(this.#last)!;
    await this.#loadConfig(config.bytes);
    this.#buffers.delete(this.#last);
    config.release();
  }

  /** `vfio_load_state_buffer_write`: the whole buffer into the resuming fd. */
  async #write(buf: Buffer): Promise<void> {
    const name = this.#d.name;
    const fd = this.#d.resumingFd();
    try {
      await writeToFd(fd, buf, name);
    } catch (err) {
      throw new Error(`${name}: writing state buffer ${this.#next} failed: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    this.#queued -= buf.length;
  }

  /** `vfio_load_bufs_thread_load_config`: DEV_CONFIG_STATE first, then the normal loader. */
  async #loadConfig(buf: Buffer): Promise<void> {
    const name = this.#d.name;
    this.#queued -= buf.length;
    const start = performance.now();
    const f = new QEMUFileReader();
    f.push(buf);
    f.end();
    const header = await f.getBe64('config state packet header').catch(() => null);
    if (header !== VFIO_MIG_FLAG_DEV_CONFIG_STATE) {
      const got = header === null ? 'nothing' : tagName(header);
      throw new Error(`${name}: expected FLAG_DEV_CONFIG_STATE but got ${got}`);
    }
    try {
      await this.#d.loadConfig(f);
    } catch (err) {
      throw new Error(`${name}: loading the device config state failed: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    this.figures.configLoaded = true;
    this.figures.configLoadedAt = wallClockMs();
    this.figures.configLoadMs = performance.now() - start;
  }

  #wake(): void {
    const w = this.#wakeUp;
    this.#wakeUp = null;
    w?.();
  }

  #waitWake(): Promise<void> {
    return new Promise((resolve) => (this.#wakeUp = resolve));
  }
}
