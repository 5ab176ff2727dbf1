/**
 * The multifd fuzz target (qemu-migration.md §4.3–§4.5): what two multifd channels carry —
 * the `MultiFDInit_t` handshake, RAM packets with their pages, SYNC packets, device-state
 * packets holding a VFIO device's `VFIODeviceStatePacket`s — produced once by the source's
 * own code (MultifdSendState, MultifdRamQueue, a sim nic's precopy-thread job), then fed,
 * one channel mutated, to the destination's real receiving side in this process: the channel
 * classification, the per-channel receive tasks, the RAM loader over guest RAM blocks and the
 * nic's VFIO device-state queue and load thread. The main channel's part is played here: one
 * `syncMain` per SYNC of the capture, then the load threads awaited.
 *
 * Every case must end in `completed` or in `failed` with an error that says what broke and
 * where (a channel, the device) — never an exception, never a hang.
 */
import { PassThrough, Writable } from 'node:stream';
import { RunState } from '../../src/guest/index.ts';
import { GuestMemory, TARGET_PAGE_SIZE } from '../../src/memory/index.ts';
import { acceptChannels } from '../../src/migration/multifd/accept.ts';
import { MultifdRamQueue } from '../../src/migration/multifd/ram-queue.ts';
import { MultifdRecvState } from '../../src/migration/multifd/recv.ts';
import { MultifdSendState } from '../../src/migration/multifd/send.ts';
import { MULTIFD_DEVICE_STATE_MAX } from '../../src/migration/multifd/wire.ts';
import { RamLoadState } from '../../src/migration/ram/load.ts';
import type { SaveVMHandlers } from '../../src/migration/savevm/handlers.ts';
import { loadStateBuffer } from '../../src/migration/savevm/load.ts';
import {
  MULTIFD_DEVICE_STATE_PACKET_SIZE,
  MULTIFD_FLAG_DEVICE_STATE,
  MULTIFD_FLAG_SYNC,
  MULTIFD_INIT_SIZE,
  MULTIFD_PACKET_HDR_SIZE,
  MULTIFD_RAM_PACKET_FIXED_SIZE,
  multifdRamPacketLen,
} from '../../src/migration/stream/multifd-constants.ts';
import { MigrationConnection } from '../../src/migration/transport/index.ts';
import type { MigrationListener } from '../../src/migration/transport/index.ts';
import { VFIO_MIGRATION_P2P, VFIO_MIGRATION_STOP_COPY } from '../../src/uapi/index.ts';
import { capture, loadCtx, readerOf, saveCtx, simDevice, testVm } from '../vfio/helpers.ts';
import type { TestVm } from '../vfio/helpers.ts';
import type { Capture, Part, Rng } from './mutators.ts';
import { MUTATORS } from './mutators.ts';

const PAGE = TARGET_PAGE_SIZE;
const CHANNELS = 2;
const UUID = Buffer.from('5a5a5a5a000041008000000000000001', 'hex');
const BLOCKS = [
  { idstr: 'pc.ram', size: 192 << 10 },
  { idstr: 'vga.vram', size: 64 << 10 },
];
const FLAGS = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P;
/** 48 KiB of state read 16 KiB at a time: three data packets and the config. */
const nic = (seed: number) => simDevice('nic', FLAGS, 'nic0', `,state-size=48K,seed=${seed}`);

/** What the source sent: each channel's bytes with its structure, and the main-channel part. */
export interface MultifdSeed {
  readonly channels: readonly Capture[];
  /** SYNC packets per channel (the main channel's MULTIFD_FLUSHes). */
  readonly syncs: number;
  /** The nic's START payload, loaded on the main channel before any packet. */
  readonly setupPayload: Buffer;
}

/** A writable connection keeping what is written to it. */
function recorder(id: number, chunks: Buffer[]): MigrationConnection {
  const writable = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk);
      done();
    },
  });
  return new MigrationConnection({
    description: `capture of multifd channel ${id}`,
    readable: null,
    writable,
    returnPath: false,
  });
}

/** Two rounds of guest RAM (a quarter of the pages zero) and the nic's state, over two channels. */
export async function saveMultifdSeed(): Promise<MultifdSeed> {
  const chunks: Buffer[][] = Array.from({ length: CHANNELS }, () => []);
  const failures: Error[] = [];
  const send = await MultifdSendState.setup({
    channels: CHANNELS,
    uuid: UUID,
    pageSize: PAGE,
    open: (id) => Promise.resolve(recorder(id, chunks[id]!)),
    onBytes: () => undefined,
    onError: (e) => failures.push(e),
  });
  const memory = GuestMemory.flat(BLOCKS);
  const queue = new MultifdRamQueue(send);
  for (let round = 0; round < 2; round++) {
    for (const b of memory.blocks) {
      const page = Buffer.alloc(PAGE);
      for (let p = 0; p < b.pages; p++) {
        page.fill((p * 7 + round) % 4 === 0 ? 0 : (p + round) & 0xff);
        b.writePage(p, page);
      }
      for (let p = 0; p < b.pages; p += 24)
        await queue.queueRun(b, p, Math.min(24, b.pages - p), true);
    }
    await queue.flushAndSync();
  }
  const src = await testVm({ devices: [{ device: nic(3) }] });
  const [e] = src.registry.entries();
  if (e === undefined) throw new Error('the nic registered no entry');
  const setupPayload = await capture((f) => e.handlers.saveSetup!(f, saveCtx(['multifd'])));
  await src.runControl.vmStop(RunState.FINISH_MIGRATE);
  await e.handlers.saveCompletePrecopyThread!({
    idstr: e.idstr,
    instanceId: e.instanceId,
    signal: new AbortController().signal,
    queueDeviceState: (p) => send.queueDeviceState(e.idstr, e.instanceId, p),
  });
  // The device state is in before the last sync, as ram_save_complete's flush follows it.
  await queue.flushAndSync();
  await send.shutdown(true);
  await e.handlers.saveCleanup?.();
  if (failures.length > 0) throw failures[0]!;
  const channels = chunks.map((c) => multifdCapture(Buffer.concat(c)));
  const syncs = channels[0]!.parts.filter(
    (p) => (channels[0]!.bytes.readUInt32BE(p.offset + 8) & MULTIFD_FLAG_SYNC) !== 0,
  ).length;
  return { channels, syncs, setupPayload };
}

/** A channel's structure: the handshake, then each packet with what the receiver checks. */
export function multifdCapture(bytes: Buffer): Capture {
  // Handshake: magic, version, UUID, channel id.
  const framing: number[] = [0, 7, 8, 8 + 16];
  const lengths: number[] = [4];
  const parts: Part[] = [];
  const ramLen = multifdRamPacketLen(PAGE);
  for (let at = MULTIFD_INIT_SIZE; at < bytes.length;) {
    const flags = bytes.readUInt32BE(at + 8);
    // magic, version, flags
    framing.push(at, at + 7, at + 11);
    lengths.push(at + 4, at + 8);
    let length: number;
    if ((flags & MULTIFD_FLAG_DEVICE_STATE) !== 0) {
      const id = at + MULTIFD_PACKET_HDR_SIZE;
      const tail = id + 256;
      // idstr (first byte, terminator), instance id; then the VFIODeviceStatePacket header
      framing.push(id, id + 255, tail + 3);
      const vfio = at + MULTIFD_DEVICE_STATE_PACKET_SIZE;
      lengths.push(tail + 4, vfio, vfio + 4, vfio + 8);
      framing.push(vfio + 3, vfio + 7, vfio + 11);
      length = MULTIFD_DEVICE_STATE_PACKET_SIZE + bytes.readUInt32BE(tail + 4);
    } else {
      // pages_alloc, normal_pages, next_packet_size, packet_num, zero_pages, ramblock
      lengths.push(at + 12, at + 16, at + 20, at + 24, at + 32);
      framing.push(at + 64);
      const normal = bytes.readUInt32BE(at + 16);
      const zero = bytes.readUInt32BE(at + 32);
      // The first normal and zero pages' offsets, both halves.
      const offsets = at + MULTIFD_RAM_PACKET_FIXED_SIZE;
      if (normal > 0) lengths.push(offsets, offsets + 4);
      if (zero > 0) lengths.push(offsets + 8 * normal, offsets + 8 * normal + 4);
      length = ramLen + normal * PAGE;
    }
    parts.push({ offset: at, length });
    at += length;
  }
  if (parts.length === 0) throw new Error('a multifd seed channel carried no packet');
  return { bytes, parts, framing, lengths, headerLength: MULTIFD_INIT_SIZE };
}

// --- the destination ------------------------------------------------------------------------

/** A listener handing out the given connections, then waiting until aborted. */
function listenerOf(conns: MigrationConnection[]): MigrationListener {
  return {
    uri: { transport: 'unix', path: 'fuzz' },
    accept: (signal) => {
      const next = conns.shift();
      if (next !== undefined) return Promise.resolve(next);
      return new Promise((_resolve, reject) =>
        signal?.addEventListener('abort', () => reject(new Error('listener closed')), {
          once: true,
        }),
      );
    },
    close: () => Promise.resolve(),
  };
}

function connection(description: string): { conn: MigrationConnection; input: PassThrough } {
  const input = new PassThrough();
  const conn = new MigrationConnection({
    description,
    readable: input,
    writable: null,
    returnPath: false,
  });
  return { conn, input };
}

/** Writes `bytes` in pieces split at random bytes (the source closes the channel later). */
function deliver(input: PassThrough, bytes: Buffer, rng: Rng): void {
  for (let at = 0; at < bytes.length;) {
    const left = bytes.length - at;
    const n = rng() < 0.5 ? left : 1 + Math.floor(rng() * Math.min(4096, left));
    input.write(bytes.subarray(at, at + n));
    at += n;
  }
}

/** Event-loop turns a channel gets to read what follows the last SYNC. */
const QUIET_TURNS = 20;
/**
 * Event-loop turns without a byte taken after which a source gives up and closes its
 * channels. Everything behind the channels (guest RAM, the sim device's resuming fd) works
 * within the loop's turns, with no timer, so a count of turns is as good as a time and
 * does not depend on the machine's load.
 */
const GIVE_UP_TURNS = 200;

export interface MultifdOutcome {
  status: 'completed' | 'failed' | 'HANG';
  error: string | null;
}

interface Destination {
  vm: TestVm;
  handlers: SaveVMHandlers;
  memory: GuestMemory;
}

async function destination(): Promise<Destination> {
  const vm = await testVm({ devices: [{ device: nic(9) }], initial: RunState.INMIGRATE });
  const [e] = vm.registry.entries();
  return { vm, handlers: e!.handlers, memory: GuestMemory.flat(BLOCKS) };
}

/**
 * One case: the channels' bytes (`inputs[i]` for channel i, the main channel's magic first)
 * into a fresh destination; resolves with how it ended.
 */
export async function receiveMultifd(
  seed: MultifdSeed,
  inputs: readonly Buffer[],
  rng: Rng,
  timeoutMs: number,
): Promise<MultifdOutcome> {
  const d = await destination();
  const lctx = loadCtx(['multifd']);
  const errors: Error[] = [];
  const fail = (err: unknown) => {
    errors.push(err instanceof Error ? err : new Error(String(err)));
    lctx.abortThreads.abort(err);
  };
  await d.handlers.loadSetup!(lctx);
  await d.handlers.loadState!(readerOf(seed.setupPayload), 1);
  await d.handlers.switchoverStart!();
  const ram = new RamLoadState(d.memory);
  ram.setup();
  const recv = new MultifdRecvState({
    channels: CHANNELS,
    uuid: UUID,
    pageSize: PAGE,
    ram,
    // Buffers go back to the receiver's pool as in a migration: later packets of a case
    // land in buffers the device already gave back.
    deviceState: (idstr, instanceId, data, release) =>
      loadStateBuffer(d.vm.registry, idstr, instanceId, data, release),
    onError: fail,
  });
  const main = connection('main channel');
  main.input.write(Buffer.from('QEVM'));
  const channels = inputs.map((_, i) => connection(`multifd channel ${i}`));
  const accepting = new AbortController();
  const total = inputs.reduce((n, b) => n + b.length, 0);
  let over = false;
  const closeChannels = () => {
    for (const c of channels) if (!c.input.writableEnded) c.input.end();
  };
  const run = async (): Promise<void> => {
    const listener = listenerOf([...channels.map((c) => c.conn), main.conn]);
    await acceptChannels(listener, accepting.signal, recv, () => undefined);
    for (let i = 0; i < seed.syncs; i++) await recv.syncMain();
    await Promise.all(lctx.threads.values());
    // The load is over: the source closes its channels once it has the destination's SHUT.
    recv.finish();
    closeChannels();
    // What follows the last SYNC is read too, until the channels end (or a channel waits).
    await quiet(() => errors.length > 0 || recv.bytesReceived === total);
  };
  const ended = () => (over = true);
  /**
   * A source whose destination waits with every byte taken (a packet it needs never came)
   * stops waiting for its SHUT and closes its channels; here after a few idle turns.
   */
  const giveUp = async (): Promise<void> => {
    let seen = -1;
    for (let idle = 0; idle < GIVE_UP_TURNS;) {
      await new Promise((r) => setImmediate(r));
      if (over) return;
      const now = recv.bytesReceived;
      idle = now === seen ? idle + 1 : 0;
      seen = now;
    }
    closeChannels();
  };
  let timer: NodeJS.Timeout | undefined;
  try {
    const ran = run().catch(fail).finally(ended);
    inputs.forEach((b, i) => deliver(channels[i]!.input, b, rng));
    const gaveUp = giveUp();
    const hung = await Promise.race([
      ran.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    ended();
    await gaveUp;
    if (hung) return { status: 'HANG', error: null };
    const first = errors[0];
    return first === undefined
      ? { status: 'completed', error: null }
      : { status: 'failed', error: first.message };
  } finally {
    clearTimeout(timer);
    accepting.abort(new Error('case over'));
    lctx.abortThreads.abort(new Error('case over'));
    await recv.close(false);
    main.conn.destroy();
    await d.handlers.loadCleanup?.();
  }
}

/** Largest Buffer a case may allocate: one device-state packet's payload at its bound. */
export const MULTIFD_ALLOCATION_CAP = MULTIFD_DEVICE_STATE_MAX;

/** Resolves once `done()` holds or after a few turns (a channel waiting for good). */
async function quiet(done: () => boolean): Promise<void> {
  for (let turn = 0; turn < QUIET_TURNS && !done(); turn++) {
    await new Promise((r) => setImmediate(r));
  }
}

/** A case: one channel (picked at random) mutated by `mutator`, the other as sent. */
export function mutateChannels(seed: MultifdSeed, mutator: string, rng: Rng): Buffer[] {
  const which = Math.floor(rng() * seed.channels.length);
  return seed.channels.map((c, i) => (i === which ? MUTATORS[mutator]!(c, rng) : c.bytes));
}
