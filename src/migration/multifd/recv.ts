/**
 * The destination's multifd channels (QEMU's `multifd_recv_*`, migration/multifd.c;
 * qemu-migration.md §4.3, §4.5), a task per channel on the event loop where QEMU has a
 * thread:
 *
 *   a channel    its `MultiFDInit_t` gives its id (checked: magic, version, UUID, range, not
 *                taken); then packets until the source closes it: RAM packets land in guest
 *                RAM through `ram`, device-state packets go to their entry's
 *                `load_state_buffer` through `deviceState`
 *   sync         a channel that reads a SYNC packet stops there until the main channel's
 *                loader reaches the matching RAM_SAVE_FLAG_MULTIFD_FLUSH and calls `syncMain`,
 *                which waits for every channel's SYNC and releases them together; so pages of
 *                one round of the source's RAM scan all landed before any of the next
 *
 * A channel that breaks the protocol or fails fails them all (waiters are rejected) and
 * `onError` tells the incoming migration. A channel that ends before `finish()` (the load is
 * over) is a failure too: the source only closes them after the destination's SHUT.
 */
import type { QEMUFileReader } from '../stream/index.ts';
import {
  MULTIFD_DEVICE_STATE_PACKET_SIZE,
  MULTIFD_FLAG_SYNC,
  MULTIFD_INIT_SIZE,
  MULTIFD_PACKET_HDR_SIZE,
} from '../stream/multifd-constants.ts';
import type { MigrationConnection } from '../transport/index.ts';
import { PacketPool } from './packet-pool.ts';
import { Semaphore } from './semaphore.ts';
import {
  MultifdError,
  MultifdRamPacket,
  isDeviceState,
  parseDeviceStateHeader,
  parseMultifdInit,
  parsePacketHeader,
} from './wire.ts';

/** Where RAM packets land (the RAM loader, ram/load.ts). */
export interface MultifdRamSink {
  /**
   * Lands one decoded RAM packet: its zero pages, and its normal pages read from `f`
   * (`packet.nextPacketSize` bytes). Throws on an unknown block or an offset outside it.
   */
  loadPacket(packet: MultifdRamPacket, f: QEMUFileReader): Promise<void>;
}

export interface MultifdRecvOptions {
  readonly channels: number;
  /** This VM's UUID: every handshake must carry it. */
  readonly uuid: Uint8Array;
  readonly pageSize: number;
  readonly ram: MultifdRamSink;
  /**
   * `qemu_loadvm_load_state_buffer`: one device-state packet's payload for an entry. `data`
   * is lent: `release` gives it back to the pool once the entry is done with it.
   */
  readonly deviceState: (
    idstr: string,
    instanceId: number,
    data: Buffer,
    release: () => void,
  ) => Promise<void>;
  /** The first failure of any channel, once. */
  readonly onError: (err: Error) => void;
}

/** Per-channel figures (for query and tests). */
export interface RecvChannelStats {
  readonly id: number;
  packets: number;
  ramPackets: number;
  deviceStatePackets: number;
  syncs: number;
}

class RecvChannel {
  readonly id: number;
  readonly conn: MigrationConnection;
  readonly f: QEMUFileReader;
  /** Released by `syncMain` after this channel read a SYNC packet. */
  readonly released = new Semaphore();
  readonly stats: RecvChannelStats;
  readonly ram: MultifdRamPacket;
  readonly devHeader = Buffer.alloc(MULTIFD_DEVICE_STATE_PACKET_SIZE);

  constructor(id: number, conn: MigrationConnection, f: QEMUFileReader, pageSize: number) {
    this.id = id;
    this.conn = conn;
    this.f = f;
    this.ram = new MultifdRamPacket(pageSize);
    this.stats = { id, packets: 0, ramPackets: 0, deviceStatePackets: 0, syncs: 0 };
  }
}

export class MultifdRecvState {
  readonly #opts: MultifdRecvOptions;
  readonly #channels: (RecvChannel | undefined)[];
  #count = 0;
  /** Posted once by each channel that read a SYNC packet (`multifd_recv_state->sem_sync`). */
  readonly #synced = new Semaphore();
  #allCreated: () => void = () => undefined;
  readonly #created: Promise<void>;
  #failure: Error | null = null;
  #finished = false;
  readonly #loops: Promise<void>[] = [];
  readonly #packets = new PacketPool();

  constructor(opts: MultifdRecvOptions) {
    this.#opts = opts;
    this.#channels = new Array<RecvChannel | undefined>(opts.channels).fill(undefined);
    this.#created = new Promise((resolve) => (this.#allCreated = resolve));
    if (opts.channels === 0) this.#allCreated();
  }

  /** `multifd_recv_all_channels_created`. */
  get allCreated(): boolean {
    return this.#count === this.#opts.channels;
  }

  /** Resolves once every channel arrived. */
  whenAllCreated(): Promise<void> {
    return this.#created;
  }

  /** Bytes read so far on every channel (handshakes included). */
  get bytesReceived(): number {
    let n = 0;
    for (const c of this.#channels) n += c?.f.offset ?? 0;
    return n;
  }

  /** Each channel's figures, in id order (channels not arrived yet left out). */
  get stats(): readonly RecvChannelStats[] {
    return this.#channels.flatMap((c) => (c === undefined ? [] : [c.stats]));
  }

  /**
   * `multifd_recv_new_channel`: reads the handshake of a channel whose first bytes were the
   * multifd magic and starts its loop. Throws (and fails the state) with QEMU's message when
   * the handshake is wrong or names a channel already set up.
   */
  async addChannel(conn: MigrationConnection, f: QEMUFileReader): Promise<number> {
    let id: number;
    try {
      const init = await f.getBytes(MULTIFD_INIT_SIZE, 'multifd handshake', MULTIFD_INIT_SIZE);
      id = parseMultifdInit(init, this.#opts.uuid, this.#opts.channels);
      if (this.#channels[id] !== undefined) {
        throw new MultifdError(`multifd: received id '${id}' already setup'`);
      }
    } catch (err) {
      const e = new Error(
        `failed to receive packet via multifd channel ${this.#count}: ${message(err)}`,
        { cause: err },
      );
      this.#fail(e);
      throw e;
    }
    const channel = new RecvChannel(id, conn, f, this.#opts.pageSize);
    this.#channels[id] = channel;
    this.#count++;
    this.#loops.push(this.#run(channel));
    if (this.allCreated) this.#allCreated();
    return id;
  }

  /**
   * `multifd_recv_sync_main`: waits until every channel read a SYNC packet, then lets them all
   * go on. Rejects once a channel failed.
   */
  async syncMain(): Promise<void> {
    const channels = this.#live();
    for (let i = 0; i < channels.length; i++) await this.#synced.wait();
    for (const c of channels) c.released.post();
  }

  /**
   * The load is over: a channel the source closes from now on ends quietly, and every channel
   * is closed (gracefully: what the source still sends is drained) once `close` runs.
   */
  finish(): void {
    this.#finished = true;
  }

  /** `multifd_recv_cleanup`: stops every loop and closes every channel. */
  async close(graceful: boolean): Promise<void> {
    this.#finished = true;
    const err = new Error('multifd channels closed');
    this.#fail(err, false);
    await Promise.all(
      this.#channels.map(async (c) => {
        if (c === undefined) return;
        if (graceful) await c.conn.close();
        else c.conn.destroy();
      }),
    );
    await Promise.allSettled(this.#loops);
  }

  /** Drops every channel at once (the incoming migration failed elsewhere). */
  destroy(err: Error): void {
    this.#fail(err, false);
    for (const c of this.#channels) c?.conn.destroy(err);
  }

  // --- one channel ---------------------------------------------------------------------------

  async #run(c: RecvChannel): Promise<void> {
    try {
      for (;;) {
        if (this.#failure !== null) return;
        // The source closes a channel between packets, once the migration is over.
        if (await c.f.atEnd()) {
          if (this.#finished) return;
          throw new MultifdError('the source closed the channel before the end of the load');
        }
        await this.#packet(c);
      }
    } catch (err) {
      if (this.#failure !== null) return;
      this.#fail(new Error(`multifd channel ${c.id}: ${message(err)}`, { cause: err }));
    }
  }

  /** One packet: header, then RAM or device state, then a SYNC stop if flagged. */
  async #packet(c: RecvChannel): Promise<void> {
    const { f } = c;
    const hdr = c.ram.bytes.subarray(0, MULTIFD_PACKET_HDR_SIZE);
    await f.readInto(hdr, 'multifd packet header');
    const flags = parsePacketHeader(hdr);
    c.stats.packets++;
    if (isDeviceState(flags)) {
      hdr.copy(c.devHeader);
      const rest = MULTIFD_DEVICE_STATE_PACKET_SIZE - MULTIFD_PACKET_HDR_SIZE;
      await f.readIntoAt(c.devHeader, MULTIFD_PACKET_HDR_SIZE, rest, 'multifd device state packet');
      const h = parseDeviceStateHeader(c.devHeader, flags);
      const lent = this.#packets.take(h.size);
      try {
        await f.readInto(lent.bytes, `device state of '${h.idstr}'`);
        c.stats.deviceStatePackets++;
        await this.#opts.deviceState(h.idstr, h.instanceId, lent.bytes, lent.release);
      } catch (err) {
        lent.release();
        throw err;
      }
      return;
    }
    const rest = c.ram.packetLen - MULTIFD_PACKET_HDR_SIZE;
    await f.readIntoAt(c.ram.bytes, MULTIFD_PACKET_HDR_SIZE, rest, 'multifd RAM packet');
    c.ram.decode();
    c.stats.ramPackets++;
    // Even a SYNC packet may carry pages (QEMU < 9.0 sends them together).
    if (c.ram.pages > 0) await this.#opts.ram.loadPacket(c.ram, f);
    if ((flags & MULTIFD_FLAG_SYNC) !== 0) {
      c.stats.syncs++;
      this.#synced.post();
      await c.released.wait();
    }
  }

  // --- failure -------------------------------------------------------------------------------

  #live(): RecvChannel[] {
    if (this.#failure !== null) throw this.#failure;
    if (!this.allCreated) throw new Error('multifd: a sync before every channel arrived');
    return this.#channels as RecvChannel[];
  }

  #fail(err: Error, report = true): void {
    if (this.#failure !== null) return;
    this.#failure = err;
    this.#synced.fail(err);
    for (const c of this.#channels) {
      if (c === undefined) continue;
      c.released.fail(err);
      // A loop waiting for bytes stops now (its reader lets go of the socket).
      c.f.close();
    }
    if (report) this.#opts.onError(err);
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
