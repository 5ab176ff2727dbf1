/**
 * VFIO device state over multifd (qemu-migration.md §4.2, §4.4–§4.6), the device layer alone:
 * the source's precopy-thread jobs turn STOP_COPY data and the config into
 * VFIODeviceStatePackets, the destination takes them in any order, its load thread writes them
 * strictly by idx and loads the config — after the iterables when asked — and every packet it
 * must refuse is refused with QEMU's message.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { RunState } from '../../src/guest/index.ts';
import type { SaveVMHandlers } from '../../src/migration/savevm/handlers.ts';
import type { SaveStateEntry } from '../../src/migration/savevm/registry.ts';
import { VFIO_MIGRATION_P2P, VFIO_MIGRATION_STOP_COPY } from '../../src/uapi/index.ts';
import type { TestLoadContext, TestVm } from './helpers.ts';
import {
  FLAG_HEX,
  capture,
  loadCtx,
  mig,
  overriding,
  readerOf,
  saveCtx,
  simDevice,
  testVm,
} from './helpers.ts';

const FLAGS = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P;

interface Packet {
  idstr: string;
  instanceId: number;
  bytes: Buffer;
}

/**
 * Source and destination with a nic (1 MiB of state), a gpu (3 MiB) and an mtty, all with
 * `props`; the destination's config loads are logged in `log`.
 */
async function pairOf(props = '', log?: string[]): Promise<{ src: TestVm; dst: TestVm }> {
  const devices = (side: string) => [
    { device: simDevice('nic', FLAGS, 'nic0', `,state-size=1M,seed=${side === 'src' ? 3 : 9}`) },
    { device: simDevice('gpu', FLAGS, 'gpu0', `,state-size=3M,seed=${side === 'src' ? 4 : 8}`) },
    { device: simDevice('mtty', FLAGS, 'tty0') },
  ];
  const src = await testVm({ devices: devices('src').map((d) => ({ ...d, properties: props })) });
  const dstDevices = devices('dst').map((d) => ({
    device:
      log === undefined
        ? d.device
        : overriding(d.device, {
            loadConfig: async (blob) => {
              log.push(`config ${d.device.id}`);
              await d.device.loadConfig(blob);
            },
          }),
    properties: props,
  }));
  const dst = await testVm({ devices: dstDevices, initial: RunState.INMIGRATE });
  return { src, dst };
}

function handlersOf(vm: TestVm, e: SaveStateEntry): SaveVMHandlers {
  const h = vm.registry.find(e.idstr, e.instanceId)?.handlers;
  assert.ok(h, `${e.idstr} on both sides`);
  return h;
}

/**
 * A stop-and-copy migration of every VFIO entry with device state over multifd, up to the
 * source's END sections: START payloads loaded, SWITCHOVER_START, the precopy-thread jobs
 * run, their packets collected. Returns the packets, what is left to do, and the digests.
 */
async function toEnd(src: TestVm, dst: TestVm, log?: string[]) {
  const entries = src.registry.entries();
  const lctx: TestLoadContext = loadCtx(['multifd']);
  for (const e of entries) await handlersOf(dst, e).loadSetup!(lctx);
  const sctx = saveCtx(['multifd'], () => src.runControl.isRunning());
  for (const e of entries) {
    const payload = await capture((f) => e.handlers.saveSetup!(f, sctx));
    await handlersOf(dst, e).loadState!(readerOf(payload), 1);
  }
  assert.deepEqual(await src.runControl.vmStop(RunState.FINISH_MIGRATE), []);
  const digests = new Map<string, string>();
  for (const d of src.set.devices) digests.set(d.name, await d.device.stateDigest!());
  // SWITCHOVER_START: the destination's load threads start before any packet arrives.
  for (const e of entries) await handlersOf(dst, e).switchoverStart!();
  const packets: Packet[] = [];
  const abort = new AbortController();
  await Promise.all(
    entries.map((e) =>
      e.handlers.saveCompletePrecopyThread!({
        idstr: e.idstr,
        instanceId: e.instanceId,
        signal: abort.signal,
        queueDeviceState: (p) => {
          packets.push({ idstr: e.idstr, instanceId: e.instanceId, bytes: Buffer.from(p) });
          return Promise.resolve();
        },
      }),
    ),
  );
  for (const e of entries) {
    const end = await capture((f) => e.handlers.saveComplete!(f));
    assert.equal(end.toString('hex'), FLAG_HEX.EOS, `${e.idstr}: END is a dummy EOS`);
    await handlersOf(dst, e).loadState!(readerOf(end), 1);
    log?.push(`END ${e.idstr}`);
  }
  const full = async () => {
    for (const e of entries) {
      const payload = await capture((f) => e.handlers.saveState!(f));
      log?.push(`FULL ${e.idstr} ${payload.toString('hex')}`);
      await handlersOf(dst, e).loadState!(readerOf(payload), 1);
    }
  };
  // Each packet is lent as a channel lends it: once given back it is scribbled over, as a
  // pooled buffer reused for the next packet would be, so keeping it past `release` shows.
  const released = { count: 0 };
  const deliver = async (order: readonly number[]) => {
    for (const i of order) {
      const p = packets[i]!;
      const lent = Buffer.from(p.bytes);
      const release = () => {
        released.count++;
        lent.fill(0xee);
      };
      await dst.registry.find(p.idstr, p.instanceId)!.handlers.loadStateBuffer!(lent, release);
    }
  };
  const finish = async () => {
    await Promise.all(lctx.threads.values());
    for (const e of entries) await e.handlers.saveCleanup!();
    assert.deepEqual(await dst.runControl.vmStart(), [], 'destination VM start');
    for (const e of entries) await handlersOf(dst, e).loadCleanup!();
    for (const d of dst.set.devices) {
      assert.equal(await d.device.stateDigest!(), digests.get(d.name), `${d.name} state`);
    }
  };
  return { packets, lctx, deliver, full, finish, abort, released };
}

test('every device’s state as VFIODeviceStatePackets: data by idx, then the config last', async () => {
  const { src, dst } = await pairOf();
  const run = await toEnd(src, dst);
  const gpu = run.packets.filter((p) => p.idstr.startsWith('0000:00:06.0'));
  assert.deepEqual(
    gpu.map((p) => [p.bytes.readUInt32BE(0), p.bytes.readUInt32BE(4), p.bytes.readUInt32BE(8)]),
    [...gpu.keys()].map((i) => [0, i, i === gpu.length - 1 ? 1 : 0]),
    'version 0, idx 0.., CONFIG_STATE on the last',
  );
  assert.ok(gpu.length >= 4, 'at least 3 MiB in 1 MiB reads, and the config');
  assert.ok(gpu.slice(0, -1).every((p) => p.bytes.length <= 12 + (1 << 20)));
  const config = gpu.at(-1)!.bytes;
  assert.equal(config.readBigUInt64BE(12), 0xffffffffef100002n, 'DEV_CONFIG_STATE first');
  assert.equal(config.readBigUInt64BE(config.length - 8), 0xffffffffef100001n, '... END_OF_STATE');
  // query-migrate's vfio.transferred: whole packets, their 12-byte headers included (§5.1).
  const total = run.packets.reduce((n, p) => n + p.bytes.length, 0);
  assert.equal(src.set.stats.transferred, total);
  await run.deliver(run.packets.map((_, i) => i));
  await run.full();
  await run.finish();
  assert.equal(mig(dst, 'gpu0').multifdFigures!.outOfOrder, 0, 'in order');
  assert.equal(run.released.count, run.packets.length, 'every buffer given back, once');
});

test('packets taken in any order are written strictly by idx; the states arrive whole', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer(), async (seed) => {
      const { src, dst } = await pairOf();
      const run = await toEnd(src, dst);
      const order = shuffled(run.packets.length, seed);
      await run.deliver(order);
      await run.full();
      await run.finish();
      // What the gpu saw: each packet that came after a higher idx counts as reordered.
      let highest = -1;
      let late = 0;
      for (const i of order) {
        const p = run.packets[i]!;
        if (!p.idstr.startsWith('0000:00:06.0')) continue;
        const idx = p.bytes.readUInt32BE(4);
        if (idx < highest) late++;
        highest = Math.max(highest, idx);
      }
      assert.equal(mig(dst, 'gpu0').multifdFigures!.outOfOrder, late);
    }),
    { numRuns: 5 },
  );
});

test('x-migration-load-config-after-iter: the config waits for DEV_CONFIG_LOAD_READY, after every iterable', async () => {
  const log: string[] = [];
  // Both sides agree; the source's FULL sections carry DEV_CONFIG_LOAD_READY.
  const { src, dst } = await pairOf('x-migration-load-config-after-iter=on', log);
  const run = await toEnd(src, dst, log);
  await run.deliver(run.packets.map((_, i) => i));
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(!log.some((l) => l.startsWith('config')), 'no config loaded before the iterables');
  await run.full();
  await run.finish();
  const lastEnd = log.findLastIndex((l) => l.startsWith('END'));
  for (const id of ['nic0', 'gpu0', 'tty0']) {
    assert.ok(log.indexOf(`config ${id}`) > lastEnd, `${id}: config after every END`);
  }
  assert.ok(
    log.filter((l) => l.startsWith('FULL')).every((l) => l.endsWith(FLAG_HEX.LOAD_READY)),
    'FULL sections are DEV_CONFIG_LOAD_READY',
  );
});

test('without config-after-iter the config loads with the data, FULL is a dummy EOS', async () => {
  const log: string[] = [];
  const { src, dst } = await pairOf('', log);
  const run = await toEnd(src, dst, log);
  await run.deliver(run.packets.map((_, i) => i));
  await Promise.all(run.lctx.threads.values());
  assert.equal(log.filter((l) => l.startsWith('config')).length, 3, 'configs loaded already');
  await run.full();
  assert.ok(log.filter((l) => l.startsWith('FULL')).every((l) => l.endsWith(FLAG_HEX.EOS)));
  await run.finish();
});

test('the destination refuses a duplicate idx, a bad version, an invalid idx, a short packet, with QEMU’s messages', async () => {
  const cases: [string, (p: Packet[]) => Packet[], RegExp][] = [
    ['duplicate', (p) => [p[0]!, p[0]!], /^Error: gpu0: state buffer 0 already filled$/],
    ['version', (p) => [withU32(p[0]!, 0, 1)], /^Error: gpu0: packet has unknown version 1$/],
    ['idx', (p) => [withU32(p[0]!, 4, 0xffffffff)], /^Error: gpu0: packet index is invalid$/],
    [
      'short',
      (p) => [{ ...p[0]!, bytes: p[0]!.bytes.subarray(0, 11) }],
      /^Error: gpu0: packet too short at 11 \(min is 12\)$/,
    ],
    [
      'after config',
      (p) => [p.at(-1)!, withU32(p[0]!, 4, 9)],
      /state buffer 9 after config state buffer \d+/,
    ],
  ];
  for (const [what, mangle, re] of cases) {
    const { src, dst } = await pairOf();
    const run = await toEnd(src, dst);
    const gpu = run.packets.filter((p) => p.idstr.startsWith('0000:00:06.0'));
    const handler = dst.registry.find(gpu[0]!.idstr, 0)!.handlers;
    let error: unknown;
    for (const p of mangle(gpu)) {
      try {
        await handler.loadStateBuffer!(p.bytes);
      } catch (err) {
        error = err;
        break;
      }
    }
    assert.match(String(error), re, what);
    run.abort.abort();
    run.lctx.abortThreads.abort(new Error('the load failed'));
    for (const e of dst.registry.entries()) await e.handlers.loadCleanup!();
  }
});

test('x-migration-max-queued-buffers-size: queuing beyond it is refused, and the bytes queued never pass it', async () => {
  const { src, dst } = await pairOf('x-migration-max-queued-buffers-size=1572864');
  const run = await toEnd(src, dst);
  // Everything of the gpu but buffer 0: nothing can be written, so the buffers queue up.
  const gpu = run.packets.filter((p) => p.idstr.startsWith('0000:00:06.0'));
  const handler = dst.registry.find(gpu[0]!.idstr, 0)!.handlers;
  await handler.loadStateBuffer!(gpu[1]!.bytes);
  await assert.rejects(
    handler.loadStateBuffer!(gpu[2]!.bytes),
    /^Error: gpu0: queuing state buffer 2 would exceed the size max of 1572864$/,
  );
  const figures = mig(dst, 'gpu0').multifdFigures!;
  assert.ok(figures.peakQueuedBytes <= 1572864, `${figures.peakQueuedBytes} bytes queued at most`);
  run.lctx.abortThreads.abort(new Error('the load failed'));
  await assert.rejects(run.lctx.threads.get('of gpu0')!, /operation cancelled/);
  for (const e of dst.registry.entries()) await e.handlers.loadCleanup!();
});

test('DEV_CONFIG_LOAD_READY is refused outside multifd, when not enabled, and twice', async () => {
  const ready = Buffer.from(FLAG_HEX.LOAD_READY, 'hex');
  const plain = await testVm({
    devices: [{ device: simDevice('nic', FLAGS, 'nic0') }],
    initial: RunState.INMIGRATE,
  });
  await mig(plain, 'nic0').loadSetup(loadCtx());
  await assert.rejects(
    mig(plain, 'nic0').loadState(readerOf(ready)),
    /got DEV_CONFIG_LOAD_READY outside multifd transfer/,
  );
  const off = await testVm({
    devices: [{ device: simDevice('nic', FLAGS, 'nic0') }],
    initial: RunState.INMIGRATE,
  });
  await mig(off, 'nic0').loadSetup(loadCtx(['multifd']));
  await assert.rejects(
    mig(off, 'nic0').loadState(readerOf(ready)),
    /nic0: got DEV_CONFIG_LOAD_READY but was disabled/,
  );
  const on = await testVm({
    devices: [
      {
        device: simDevice('nic', FLAGS, 'nic0'),
        properties: 'x-migration-load-config-after-iter=on',
      },
    ],
    initial: RunState.INMIGRATE,
  });
  await mig(on, 'nic0').loadSetup(loadCtx(['multifd']));
  await mig(on, 'nic0').loadState(readerOf(ready));
  await assert.rejects(
    mig(on, 'nic0').loadState(readerOf(ready)),
    /nic0: duplicate DEV_CONFIG_LOAD_READY/,
  );
});

test('a precopy-thread job stops with "operation cancelled" once the core aborts the jobs', async () => {
  const src = await testVm({
    devices: [{ device: simDevice('gpu', FLAGS, 'gpu0', ',state-size=3M') }],
  });
  const m = mig(src, 'gpu0');
  await capture((f) => m.saveSetup(f, saveCtx(['multifd'])));
  await src.runControl.vmStop(RunState.FINISH_MIGRATE);
  const abort = new AbortController();
  let queued = 0;
  await assert.rejects(
    m.saveCompletePrecopyThread({
      idstr: 'x',
      instanceId: 0,
      signal: abort.signal,
      queueDeviceState: () => {
        if (++queued === 2) abort.abort();
        return Promise.resolve();
      },
    }),
    /^Error: operation cancelled$/,
  );
  assert.equal(queued, 2);
  await m.saveCleanup();
});

/** A permutation of 0..n-1 from a seed (a small LCG: repeatable). */
function shuffled(n: number, seed: number): number[] {
  const out = [...Array(n).keys()];
  let x = seed >>> 0;
  for (let i = n - 1; i > 0; i--) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function withU32(p: Packet, at: number, value: number): Packet {
  const bytes = Buffer.from(p.bytes);
  bytes.writeUInt32BE(value, at);
  return { ...p, bytes };
}
