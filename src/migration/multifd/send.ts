/**
 * The source's multifd channels (QEMU's `multifd_send_*`, migration/multifd.c;
 * qemu-migration.md §4.3), with a task per channel on the event loop where QEMU has a thread:
 *
 *   setup      every channel is opened (transport, TLS, a fault layer: `open`) and sends its
 *              `MultiFDInit_t` first
 *   send       a packet goes to the next idle channel, round-robin (`multifd_send`); a caller
 *              waits while every channel is busy, so at most one packet per channel is in
 *              flight and memory stays bounded
 *   sync       every channel writes a SYNC packet after what it was given so far
 *              (`multifd_send_sync_main`); the caller then says so on the main channel
 *   shutdown   channels end gracefully after a completed migration, are destroyed otherwise
 *
 * A channel writes a packet as one gathered write (header and data) and is idle again once
 * its socket took the bytes. The first channel that fails fails them all: every waiter is
 * rejected and `onError` tells the migration.
 */
import type { Writable } from 'node:stream';
import { MULTIFD_FLAG_SYNC, MULTIFD_PACKET_SIZE } from '../stream/multifd-constants.ts';
import type { MigrationConnection } from '../transport/index.ts';
import { MultifdRamPacket, encodeDeviceStateHeader, encodeMultifdInit } from './wire.ts';

/** How long a graceful end waits for the destination to close a channel (ms). */
const CLOSE_TIMEOUT_MS = 5000;

export interface MultifdSendOptions {
  readonly channels: number;
  /** The source VM's UUID, sent in every handshake. */
  readonly uuid: Uint8Array;
  readonly pageSize: number;
  /** Opens channel `id`, connected and (with tls-creds) through its TLS handshake. */
  readonly open: (id: number) => Promise<MigrationConnection>;
  /** `mig_stats.multifd_bytes`: bytes a channel finished writing. */
  readonly onBytes: (n: number) => void;
  /** The first channel failure, once. */
  readonly onError: (err: Error) => void;
}

/** A RAM packet and the normal pages it carries, lent to a channel while it writes them. */
export interface RamPacketBuffer {
  readonly packet: MultifdRamPacket;
  /** Room for a packet's pages; the first `packet.normalCount` pages are sent. */
  readonly data: Buffer;
}

interface Job {
  readonly parts: readonly Uint8Array[];
  readonly bytes: number;
  /** Called once the socket took the bytes, or with the error that stopped it. */
  readonly done: (err?: Error) => void;
}

class SendChannel {
  readonly id: number;
  readonly conn: MigrationConnection;
  readonly #w: Writable;
  readonly #owner: MultifdSendState;
  /** This channel's own packet for SYNC (`p->packet`). */
  readonly #sync: MultifdRamPacket;
  readonly #jobs: Job[] = [];
  #writing = false;
  /** Given to a caller of `acquire` that has not queued its packet yet. */
  reserved = false;
  packets = 0;

  constructor(id: number, conn: MigrationConnection, owner: MultifdSendState, pageSize: number) {
    this.id = id;
    this.conn = conn;
    this.#owner = owner;
    this.#sync = new MultifdRamPacket(pageSize);
    this.#sync.flags = MULTIFD_FLAG_SYNC;
    const w = conn.writable;
    if (w === null) throw new Error(`${conn.description} cannot be written`);
    this.#w = w;
    // Failures surface through the write callbacks; an 'error' event must not crash us.
    w.on('error', () => undefined);
  }

  get writable(): Writable {
    return this.#w;
  }

  get idle(): boolean {
    return !this.#writing && !this.reserved && this.#jobs.length === 0;
  }

  push(job: Job): void {
    this.reserved = false;
    this.#jobs.push(job);
    this.#pump();
  }

  /** A SYNC packet after everything queued before it. */
  sync(packetNum: number): Promise<void> {
    return this.write([this.#sync.encode(packetNum)]);
  }

  /** Queues `parts` as one packet; resolves once the socket took them. */
  write(parts: readonly Uint8Array[]): Promise<void> {
    let bytes = 0;
    for (const p of parts) bytes += p.length;
    return new Promise((resolve, reject) =>
      this.push({ parts, bytes, done: (err) => (err === undefined ? resolve() : reject(err)) }),
    );
  }

  /** Fails what is queued (the channel is going away). */
  drop(err: Error): void {
    for (const job of this.#jobs.splice(0)) job.done(err);
  }

  #pump(): void {
    if (this.#writing) return;
    const job = this.#jobs.shift();
    if (job === undefined) return;
    this.#writing = true;
    const w = this.#w;
    const last = job.parts.length - 1;
    // Header and data go down as one gathered write (writev), as QEMU's iovec does.
    if (last > 0) w.cork();
    for (let i = 0; i < last; i++) w.write(job.parts[i]!);
    w.write(job.parts[last]!, (err) => {
      this.#writing = false;
      if (err) {
        const why = writeError(err);
        job.done(why);
        this.#owner.channelFailed(this, why);
        return;
      }
      this.packets++;
      this.#owner.written(job.bytes);
      job.done();
      this.#pump();
      if (this.idle) this.#owner.channelIdle(this);
    });
    if (last > 0) w.uncork();
  }
}

/** Node's codes for a write to a connection that already ended (the peer closed it). */
const WRITE_AFTER_CLOSE = new Set(['ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END']);

/** A write's error, said in terms of the channel rather than of Node's stream internals. */
function writeError(err: Error): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === undefined || !WRITE_AFTER_CLOSE.has(code)) return err;
  return new Error('the connection was closed while packets were still to be written', {
    cause: err,
  });
}

export class MultifdSendState {
  readonly #opts: MultifdSendOptions;
  readonly #channels: SendChannel[] = [];
  /** Callers waiting for an idle channel, first come first served. */
  #waiters: { resolve: (c: SendChannel) => void; reject: (err: Error) => void }[] = [];
  /** RAM packets not lent to a channel (QEMU swaps `MultiFDSendData` the same way). */
  readonly #freeRam: RamPacketBuffer[] = [];
  #next = 0;
  #packetNum = 0;
  #failure: Error | null = null;
  #closed = false;

  private constructor(opts: MultifdSendOptions) {
    this.#opts = opts;
  }

  /**
   * `multifd_send_setup`: opens every channel and queues its handshake. If one cannot be
   * opened, the others are dropped and the error names the channel.
   */
  static async setup(opts: MultifdSendOptions): Promise<MultifdSendState> {
    const state = new MultifdSendState(opts);
    const opened = await Promise.allSettled(
      Array.from({ length: opts.channels }, (_, id) => opts.open(id)),
    );
    const failed = opened.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      for (const r of opened) if (r.status === 'fulfilled') r.value.destroy();
      const reason = (opened[failed] as PromiseRejectedResult).reason as unknown;
      throw new Error(
        `multifd channel ${failed}: ${reason instanceof Error ? reason.message : String(reason)}`,
        { cause: reason },
      );
    }
    opened.forEach((r, id) => {
      const conn = (r as PromiseFulfilledResult<MigrationConnection>).value;
      state.#channels.push(new SendChannel(id, conn, state, opts.pageSize));
    });
    for (let i = 0; i <= opts.channels; i++) {
      state.#freeRam.push({
        packet: new MultifdRamPacket(opts.pageSize),
        data: Buffer.alloc(MULTIFD_PACKET_SIZE),
      });
    }
    for (const c of state.#channels) {
      const init = encodeMultifdInit(opts.uuid, c.id);
      c.push({ parts: [init], bytes: init.length, done: () => undefined });
    }
    return state;
  }

  /** The channels' connections, in id order (stall watchdogs, faults). */
  get connections(): readonly MigrationConnection[] {
    return this.#channels.map((c) => c.conn);
  }

  /** Packets each channel wrote, in id order. */
  get packetsPerChannel(): readonly number[] {
    return this.#channels.map((c) => c.packets);
  }

  /** A RAM packet to fill; there is always one while the RAM queue hands them back by `sendRam`. */
  takeRamPacket(): RamPacketBuffer {
    const p = this.#freeRam.pop();
    if (p === undefined) throw new Error('multifd: no free RAM packet (one is filled twice)');
    p.packet.reset();
    return p;
  }

  /** `multifd_send` of a RAM packet: it goes back to the free list once written. */
  async sendRam(p: RamPacketBuffer): Promise<void> {
    const channel = await this.#acquire();
    const header = p.packet.encode(this.#packetNum++);
    const size = p.packet.nextPacketSize;
    const parts = size === 0 ? [header] : [header, p.data.subarray(0, size)];
    channel.push({
      parts,
      bytes: header.length + size,
      done: () => this.#freeRam.push(p),
    });
  }

  /**
   * `multifd_queue_device_state`: one packet of `idstr`'s state on the next idle channel.
   * Resolves once the channel wrote it: `data` is not copied, so the caller keeps it untouched
   * until then and may reuse it after (a job keeps a few packets in flight to overlap its
   * device reads with the writes).
   */
  async queueDeviceState(idstr: string, instanceId: number, data: Uint8Array): Promise<void> {
    const header = encodeDeviceStateHeader(idstr, instanceId, data.length);
    const channel = await this.#acquire();
    await channel.write([header, data]);
  }

  /**
   * `multifd_send_sync_main(MULTIFD_SYNC_ALL)`: every channel writes a SYNC packet after the
   * packets it was given; resolves once all did.
   */
  async syncMain(): Promise<void> {
    this.#throwIfFailed();
    await Promise.all(this.#channels.map((c) => c.sync(this.#packetNum++)));
    this.#throwIfFailed();
  }

  /**
   * `multifd_send_shutdown`: after a completed migration each channel finishes what it has and
   * ends gracefully (the destination closes its side); otherwise every channel is destroyed.
   */
  async shutdown(graceful: boolean): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const clean = graceful && this.#failure === null;
    this.#fail(new Error('multifd channels shut down'), false);
    await Promise.all(
      this.#channels.map(async (c) => {
        if (clean) await c.conn.close(CLOSE_TIMEOUT_MS);
        else c.conn.destroy();
      }),
    );
  }

  /** Destroys every channel at once (migrate_cancel, a failure elsewhere). */
  destroy(err: Error): void {
    this.#fail(err, false);
    for (const c of this.#channels) c.conn.destroy(err);
  }

  // --- for SendChannel ----------------------------------------------------------------------

  written(bytes: number): void {
    this.#opts.onBytes(bytes);
  }

  channelIdle(c: SendChannel): void {
    const w = this.#waiters.shift();
    if (w === undefined) return;
    c.reserved = true;
    w.resolve(c);
  }

  channelFailed(c: SendChannel, err: Error): void {
    this.#fail(new Error(`multifd channel ${c.id}: ${err.message}`, { cause: err }), true);
  }

  // --- internals ----------------------------------------------------------------------------

  /** The next idle channel from where the last one was found, or a wait for one. */
  #acquire(): Promise<SendChannel> {
    this.#throwIfFailed();
    const n = this.#channels.length;
    for (let k = 0; k < n; k++) {
      const c = this.#channels[(this.#next + k) % n]!;
      if (!c.idle) continue;
      this.#next = (c.id + 1) % n;
      c.reserved = true;
      return Promise.resolve(c);
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  #fail(err: Error, report: boolean): void {
    if (this.#failure !== null) return;
    this.#failure = err;
    for (const w of this.#waiters.splice(0)) w.reject(err);
    for (const c of this.#channels) c.drop(err);
    if (report) this.#opts.onError(err);
  }

  #throwIfFailed(): void {
    if (this.#failure !== null) throw this.#failure;
  }
}
