/**
 * Multifd channels over loopback TCP, without the rest of a migration: the handshake, RAM
 * packets into guest RAM round after round with a sync between rounds (a slow channel cannot
 * make an older copy of a page land after a newer one), device-state packets, and the
 * failures each side reports.
 */
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { test } from 'node:test';
import { GuestMemory, TARGET_PAGE_SIZE } from '../../../src/memory/index.ts';
import { MultifdRamQueue } from '../../../src/migration/multifd/ram-queue.ts';
import { MultifdRecvState } from '../../../src/migration/multifd/recv.ts';
import { MultifdSendState } from '../../../src/migration/multifd/send.ts';
import { encodeMultifdInit } from '../../../src/migration/multifd/wire.ts';
import { RamLoadState } from '../../../src/migration/ram/load.ts';
import { faultConnection } from '../../../src/migration/transport/fault-channel.ts';
import { connect, listen } from '../../../src/migration/transport/index.ts';
import type { MigrationConnection } from '../../../src/migration/transport/index.ts';

const PAGE = TARGET_PAGE_SIZE;
const UUID = Buffer.alloc(16, 7);
const BLOCKS = [
  { idstr: 'pc.ram', size: 2 << 20 },
  { idstr: 'vga.vram', size: 256 << 10 },
];

interface Pair {
  send: MultifdSendState;
  recv: MultifdRecvState;
  dst: GuestMemory;
  states: { idstr: string; instanceId: number; data: Buffer }[];
  errors: { send: Error[]; recv: Error[] };
  close(): Promise<void>;
}

/** `channels` channels; channel `slow` (if given) delays every chunk it sends by 3 ms. */
async function pair(channels: number, slow?: number): Promise<Pair> {
  const listener = await listen('tcp:127.0.0.1:0');
  const dst = GuestMemory.flat(BLOCKS);
  const load = new RamLoadState(dst);
  load.setup();
  const states: Pair['states'] = [];
  const errors: Pair['errors'] = { send: [], recv: [] };
  const recv = new MultifdRecvState({
    channels,
    uuid: UUID,
    pageSize: PAGE,
    ram: load,
    deviceState: (idstr, instanceId, data) => {
      states.push({ idstr, instanceId, data });
      return Promise.resolve();
    },
    onError: (e) => errors.recv.push(e),
  });
  const accepting = (async () => {
    for (let i = 0; i < channels; i++) {
      const conn = await listener.accept();
      await recv.addChannel(conn, conn.openReader());
    }
  })();
  const open = async (id: number): Promise<MigrationConnection> => {
    const conn = await connect(listener.uri);
    if (id !== slow) return conn;
    const { connection, channel } = faultConnection(conn);
    channel.delay('out', 3);
    return connection;
  };
  const send = await MultifdSendState.setup({
    channels,
    uuid: UUID,
    pageSize: PAGE,
    open,
    onBytes: () => undefined,
    onError: (e) => errors.send.push(e),
  });
  await accepting;
  await recv.whenAllCreated();
  await listener.close();
  return {
    send,
    recv,
    dst,
    states,
    errors,
    async close() {
      recv.finish();
      await send.shutdown(true);
      await recv.close(true);
    },
  };
}

function fillRandom(memory: GuestMemory, seed: number): void {
  for (const b of memory.blocks) {
    for (let p = 0; p < b.pages; p++) {
      const page = Buffer.alloc(PAGE);
      // A quarter of the pages zero: they travel as offsets only.
      if ((p * 7 + seed) % 4 !== 0) randomFillSync(page);
      b.writePage(p, page);
    }
  }
}

test('RAM in packets over 1, 2 and 4 channels, a round at a time, lands exactly; a slow channel changes nothing', async () => {
  for (const [channels, slow] of [
    [1, undefined],
    [2, 0],
    [4, 1],
  ] as const) {
    const p = await pair(channels, slow);
    const src = GuestMemory.flat(BLOCKS);
    const queue = new MultifdRamQueue(p.send);
    // Three rounds: every page again, with new content, each round synced on both sides.
    for (let round = 0; round < 3; round++) {
      fillRandom(src, round);
      for (const b of src.blocks) {
        for (let page = 0; page < b.pages; page += 32) {
          await queue.queueRun(b, page, Math.min(32, b.pages - page), true);
        }
      }
      await Promise.all([queue.flushAndSync(), p.recv.syncMain()]);
    }
    assert.equal(p.dst.digest().sha256, src.digest().sha256, `${channels} channels`);
    assert.deepEqual(p.errors, { send: [], recv: [] });
    const stats = p.recv.stats;
    assert.equal(stats.length, channels);
    assert.ok(
      stats.every((s) => s.syncs === 3),
      'a SYNC per round on every channel',
    );
    if (channels > 1)
      assert.ok(
        stats.every((s) => s.ramPackets > 3),
        'pages on every channel',
      );
    await p.close();
  }
});

test('device-state packets reach their entry with their bytes, spread over the channels', async () => {
  const p = await pair(3);
  const sent: Buffer[] = [];
  for (let i = 0; i < 12; i++) {
    const data = randomFillSync(Buffer.alloc(1 + i * 1000));
    sent.push(Buffer.from(data));
    await p.send.queueDeviceState(i % 2 ? '0000:00:05.0/vfio' : '0000:00:06.0/vfio', i % 3, data);
    data.fill(0); // the caller may reuse its buffer at once
  }
  await Promise.all([p.send.syncMain(), p.recv.syncMain()]);
  assert.equal(p.states.length, 12);
  for (let i = 0; i < 12; i++) {
    const got = p.states.find((s) => s.data.length === 1 + i * 1000)!;
    assert.equal(got.idstr, i % 2 ? '0000:00:05.0/vfio' : '0000:00:06.0/vfio');
    assert.equal(got.instanceId, i % 3);
    assert.deepEqual(got.data, sent[i]);
  }
  assert.ok(
    p.recv.stats.every((s) => s.deviceStatePackets === 4),
    'round-robin over idle channels',
  );
  await p.close();
});

/** A destination expecting `channels` channels, and raw sockets to write handshakes on. */
async function rawDestination(channels: number) {
  const listener = await listen('tcp:127.0.0.1:0');
  const errors: Error[] = [];
  const recv = new MultifdRecvState({
    channels,
    uuid: UUID,
    pageSize: PAGE,
    ram: new RamLoadState(GuestMemory.flat(BLOCKS)),
    deviceState: () => Promise.resolve(),
    onError: (e) => errors.push(e),
  });
  const uri = listener.uri;
  if (uri.transport !== 'tcp') throw new Error('tcp expected');
  const write = (bytes: Buffer) => {
    const s = netConnect(uri.port, uri.host);
    s.end(bytes);
    s.on('error', () => undefined);
  };
  const next = async () => {
    const conn = await listener.accept();
    return recv.addChannel(conn, conn.openReader());
  };
  return { recv, errors, write, next, close: () => listener.close() };
}

test('the destination refuses a handshake with another UUID, and a channel id given twice', async () => {
  const d = await rawDestination(2);
  d.write(encodeMultifdInit(UUID, 1));
  assert.equal(await d.next(), 1);
  d.write(encodeMultifdInit(UUID, 1));
  await assert.rejects(
    d.next(),
    /failed to receive packet via multifd channel 1: multifd: received id '1' already setup'/,
  );
  assert.equal(d.errors.length, 1, 'the state failed');
  await d.recv.close(false);
  await d.close();

  const e = await rawDestination(2);
  e.write(encodeMultifdInit(Buffer.alloc(16), 0));
  await assert.rejects(
    e.next(),
    /received uuid '00000000-0000-0000-0000-000000000000' and expected uuid '07070707-0707/,
  );
  await e.recv.close(false);
  await e.close();
});

test('a channel the source closes before the load is over fails the destination; a sync then rejects', async () => {
  const p = await pair(2);
  const syncing = p.recv.syncMain();
  p.send.destroy(new Error('gone'));
  await assert.rejects(syncing, /multifd channel [01]: /);
  assert.equal(p.errors.recv.length, 1);
  assert.match(p.errors.recv[0]!.message, /multifd channel [01]: /);
  await p.recv.close(false);
});

test('the source fails when a channel breaks under it, and so does every later send', async () => {
  const p = await pair(2);
  p.recv.destroy(new Error('destination gone'));
  const queue = new MultifdRamQueue(p.send);
  const src = GuestMemory.flat(BLOCKS);
  fillRandom(src, 1);
  await assert.rejects(async () => {
    for (let round = 0; round < 50; round++) {
      for (let page = 0; page < 512; page += 32) {
        await queue.queueRun(src.blocks[0]!, page, 32, false);
      }
    }
    await queue.flushAndSync();
  }, /multifd channel [01]: /);
  assert.equal(p.errors.send.length, 1);
  await p.send.shutdown(false);
});
