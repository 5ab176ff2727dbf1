/**
 * Device DMA and DMA dirty logging (vfio-uapi.md §7): writes land in the attached memory, the
 * log reports exactly the written granules at any report page size, REPORT is read-and-clear
 * and only ORs bits, START/REPORT errno cases, granule clamping, range merging, mtty's clean tracker.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { combineRanges, createSimDevice, dmaAllowed } from '../../../src/device/sim/index.ts';
import type { DmaMemory } from '../../../src/device/device.ts';
import {
  ALL_STATES,
  isRunningState,
  MigState,
  reportBitmapBytes,
  testReportBit,
} from '../../../src/uapi/index.ts';
import { makeDevice, rejectsWith } from './helpers.ts';

/** Guest memory with two windows that records every write. */
class RecordingMemory implements DmaMemory {
  readonly regions = [
    { iova: 0, length: 2 << 20 },
    { iova: 0x1_0000_0000, length: 2 << 20 },
  ];
  readonly writes: { iova: number; data: Uint8Array }[] = [];
  readonly #bytes = new Map<number, Uint8Array>(
    this.regions.map((r) => [r.iova, new Uint8Array(r.length)]),
  );

  write(iova: number, data: Uint8Array): void {
    const r = this.regions.find((x) => iova >= x.iova && iova + data.length <= x.iova + x.length);
    assert.ok(r, `DMA write at 0x${iova.toString(16)} is outside guest memory`);
    this.#bytes.get(r.iova)!.set(data, iova - r.iova);
    this.writes.push({ iova, data: data.slice() });
  }

  read(iova: number, length: number): Uint8Array {
    const r = this.regions.find((x) => iova >= x.iova && iova + length <= x.iova + x.length)!;
    return this.#bytes.get(r.iova)!.slice(iova - r.iova, iova - r.iova + length);
  }
}

const RANGES = [
  { iova: 0n, length: 2n << 20n },
  { iova: 0x1_0000_0000n, length: 2n << 20n },
];

function granulesOf(writes: readonly { iova: number; data: Uint8Array }[], g: number): Set<number> {
  const s = new Set<number>();
  for (const w of writes)
    for (let k = Math.floor(w.iova / g); k <= Math.floor((w.iova + w.data.length - 1) / g); k++)
      s.add(k);
  return s;
}

async function reportedGranules(
  dev: ReturnType<typeof makeDevice>,
  pageSize: bigint,
): Promise<Set<number>> {
  const out = new Set<number>();
  for (const r of RANGES) {
    const bitmap = new Uint8Array(reportBitmapBytes(r.length, pageSize));
    await dev.dmaLogging.report(r.iova, r.length, pageSize, bitmap);
    for (let k = 0; k < Number(r.length / pageSize); k++) {
      if (testReportBit(bitmap, k)) out.add(Number(r.iova / pageSize) + k);
    }
  }
  return out;
}

test('DMA writes land in the attached memory and the log reports exactly their granules', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 10_000 }),
      fc.constantFrom(4096n, 8192n, 65536n, 1n << 21n),
      fc.constantFrom(4096n, 16384n, 1n << 20n),
      async (seed, startPage, reportPage) => {
        const mem = new RecordingMemory();
        const dev = makeDevice('nic', 7, `,seed=${seed},dma-rate=2M`);
        dev.attachMemory(mem);
        const granule = await dev.dmaLogging.start(RANGES, startPage);
        assert.equal(granule, startPage, 'a granule inside 4K..2M is kept');
        dev.advance(20);
        assert.ok(mem.writes.length > 0, 'the device did DMA');
        assert.equal(
          dev.dmaBytesWritten,
          mem.writes.reduce((a, w) => a + w.data.length, 0),
        );
        const last = mem.writes.at(-1)!;
        assert.deepEqual(mem.read(last.iova, last.data.length), last.data);
        // Report granularity differs from the tracker's: a dirty granule sets every report bit it overlaps.
        const dirtyTracker = granulesOf(mem.writes, Number(granule));
        const want = new Set<number>();
        for (const k of dirtyTracker) {
          const lo = k * Number(granule);
          const hi = lo + Number(granule) - 1;
          for (
            let p = Math.floor(lo / Number(reportPage));
            p <= Math.floor(hi / Number(reportPage));
            p++
          ) {
            // Report bits exist only inside the report windows.
            const at = BigInt(p) * reportPage;
            if (RANGES.some((r) => at >= r.iova && at < r.iova + r.length)) want.add(p);
          }
        }
        const first = [...(await reportedGranules(dev, reportPage))].sort();
        assert.deepEqual(first, [...want].sort());
        // Read-and-clear: nothing new was written, so the next report is empty.
        assert.equal((await reportedGranules(dev, reportPage)).size, 0);
      },
    ),
    { numRuns: 25, seed: 5 },
  );
});

test('REPORT only ORs bits into the caller bitmap, and clears only its window', async () => {
  const mem = new RecordingMemory();
  const dev = makeDevice('nic', 7, ',dma-rate=4M');
  dev.attachMemory(mem);
  await dev.dmaLogging.start(RANGES, 4096n);
  dev.advance(10);
  const bitmap = new Uint8Array(reportBitmapBytes(2n << 20n, 4096n)).fill(0xff);
  await dev.dmaLogging.report(0n, 2n << 20n, 4096n, bitmap);
  assert.ok(
    bitmap.every((b) => b === 0xff),
    'pre-set bits are never cleared',
  );
  // The other window was not reported, so it still holds its dirty granules.
  const high = mem.writes.some((w) => w.iova >= 0x1_0000_0000);
  const second = await reportedGranules(dev, 4096n);
  assert.equal(second.size > 0, high);
});

test('no DMA and no state change outside the running states', async () => {
  for (const state of ALL_STATES) {
    for (const kind of ['memory', 'peer'] as const) {
      const p2pQuiesced = state !== MigState.RUNNING && state !== MigState.PRE_COPY;
      assert.equal(
        dmaAllowed(state, kind),
        isRunningState(state) && (kind === 'memory' || !p2pQuiesced),
      );
    }
  }
  for (const target of [MigState.STOP, MigState.STOP_COPY, MigState.RESUMING]) {
    const mem = new RecordingMemory();
    const dev = makeDevice('gpu', 7);
    dev.attachMemory(mem);
    await dev.setState(target);
    const digest = await dev.stateDigest();
    dev.advance(100);
    assert.equal(mem.writes.length, 0, `no DMA in ${target}`);
    assert.equal(await dev.stateDigest(), digest, `no internal change in ${target}`);
  }
  const broken = makeDevice('nic', 7);
  broken.faults.dropToError();
  await broken.setState(MigState.STOP).catch(() => undefined);
  const d = await broken.stateDigest();
  broken.advance(100);
  assert.equal(await broken.stateDigest(), d, 'no change in ERROR');
  // Running states do change, including RUNNING_P2P and PRE_COPY_P2P.
  for (const target of [
    MigState.RUNNING,
    MigState.RUNNING_P2P,
    MigState.PRE_COPY,
    MigState.PRE_COPY_P2P,
  ]) {
    const mem = new RecordingMemory();
    const dev = makeDevice('nic', 7);
    dev.attachMemory(mem);
    await dev.setState(target);
    const before = await dev.stateDigest();
    dev.advance(50);
    assert.ok(mem.writes.length > 0, `DMA in ${target}`);
    assert.notEqual(await dev.stateDigest(), before, `internal change in ${target}`);
  }
});

test('without attached memory the device DMAs into a private buffer', () => {
  const dev = makeDevice('nic', 7, ',dma-rate=1M');
  dev.advance(100);
  assert.ok(dev.dmaBytesWritten >= 100_000);
  assert.equal(dev.dmaMemory.regions[0]!.length, 4 << 20);
});

test('activity is deterministic for a seed', async () => {
  const a = makeDevice('gpu', 7, ',seed=9');
  const b = makeDevice('gpu', 7, ',seed=9');
  for (const ms of [1, 3, 10, 7]) a.advance(ms);
  b.advance(21);
  assert.equal(await a.stateDigest(), await b.stateDigest(), 'many small steps equal one big one');
  const c = makeDevice('gpu', 7, ',seed=10');
  c.advance(21);
  assert.notEqual(await c.stateDigest(), await a.stateDigest());
});

test('DMA_LOGGING_START: core checks, already started, granule clamping and range merging', async () => {
  const dev = makeDevice('nic', 7, ',log-ranges=3');
  await rejectsWith(dev.dmaLogging.start([], 4096n), 'EINVAL', 'no ranges');
  const many = Array.from({ length: 257 }, (_, i) => ({ iova: BigInt(i) << 20n, length: 4096n }));
  await rejectsWith(dev.dmaLogging.start(many, 4096n), 'E2BIG', '257 ranges');
  await rejectsWith(
    dev.dmaLogging.start([{ iova: 100n, length: 4096n }], 4096n),
    'EINVAL',
    'misaligned',
  );
  await rejectsWith(
    dev.dmaLogging.start([{ iova: 0xffff_ffff_ffff_f000n, length: 0x2000n }], 4096n),
    'EOVERFLOW',
    'wraps',
  );
  await rejectsWith(
    dev.dmaLogging.start(
      [
        { iova: 0n, length: 8192n },
        { iova: 4096n, length: 4096n },
      ],
      4096n,
    ),
    'EINVAL',
    'overlap',
  );
  assert.equal(
    await dev.dmaLogging.start([{ iova: 0n, length: 1n << 30n }], 512n << 20n),
    2n << 20n,
    'clamped to 2M',
  );
  await rejectsWith(
    dev.dmaLogging.start([{ iova: 0n, length: 4096n }], 4096n),
    'EINVAL',
    'second start',
  );
  await dev.dmaLogging.stop();
  await dev.dmaLogging.stop(); // stop when not started succeeds
  assert.equal(
    await dev.dmaLogging.start([{ iova: 0n, length: 1n << 20n }], 1024n),
    4096n,
    'raised to 4K',
  );
  await dev.dmaLogging.stop();
  assert.equal(
    await dev.dmaLogging.start([{ iova: 0n, length: 3n << 14n }], 3n << 12n),
    8192n,
    'rounded down',
  );
  await dev.dmaLogging.stop();
  const ranges = [0, 1, 5, 6, 20].map((mib) => ({ iova: BigInt(mib) << 20n, length: 1n << 20n }));
  await dev.dmaLogging.start(ranges, 4096n);
  assert.deepEqual(dev.dirtyLog.trackedRanges, [
    { iova: 0n, length: 2n << 20n },
    { iova: 5n << 20n, length: 2n << 20n },
    { iova: 20n << 20n, length: 1n << 20n },
  ]);
});

test('combineRanges covers every input byte with at most max ranges', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 0, max: 500 }), { minLength: 1, maxLength: 40 }),
      fc.integer({ min: 1, max: 10 }),
      (starts, max) => {
        const ranges = starts.map((s) => ({ iova: BigInt(s) * 8192n, length: 4096n }));
        const merged = combineRanges(ranges, max);
        assert.ok(merged.length <= Math.max(max, 1));
        for (const r of ranges) {
          assert.ok(merged.some((m) => m.iova <= r.iova && r.iova + r.length <= m.iova + m.length));
        }
      },
    ),
    { numRuns: 200, seed: 9 },
  );
});

test('DMA_LOGGING_REPORT errno cases', async () => {
  const dev = makeDevice('nic', 7);
  const bitmap = new Uint8Array(8);
  await rejectsWith(dev.dmaLogging.report(0n, 4096n, 4096n, bitmap), 'EINVAL', 'not started');
  await dev.dmaLogging.start(RANGES, 4096n);
  await rejectsWith(dev.dmaLogging.report(0n, 4096n, 2048n, bitmap), 'EINVAL', 'page < 4K');
  await rejectsWith(
    dev.dmaLogging.report(0n, 4096n, 12288n, bitmap),
    'EINVAL',
    'not a power of two',
  );
  await rejectsWith(
    dev.dmaLogging.report(0xffff_ffff_ffff_f000n, 0x2000n, 4096n, bitmap),
    'EOVERFLOW',
  );
  await rejectsWith(
    dev.dmaLogging.report(0n, 1n << 20n, 4096n, new Uint8Array(31)),
    'EFAULT',
    'short bitmap',
  );
  await dev.dmaLogging.report(0n, 1n << 20n, 4096n, new Uint8Array(32));
});

test('mtty: logging refuses misuse like any device and reports clean; logging=off is ENOTTY', async () => {
  const mtty = makeDevice('mtty', 7);
  assert.equal(await mtty.dmaLogging.probe(), true);
  const bitmap = new Uint8Array(32);
  await rejectsWith(mtty.dmaLogging.report(0n, 1n << 20n, 4096n, bitmap), 'EINVAL', 'not started');
  assert.equal(await mtty.dmaLogging.start(RANGES, 4096n), 4096n);
  await rejectsWith(mtty.dmaLogging.start(RANGES, 4096n), 'EINVAL', 'a second START');
  mtty.advance(1000);
  await mtty.dmaLogging.report(0n, 1n << 20n, 4096n, bitmap);
  assert.ok(
    bitmap.every((b) => b === 0),
    'mtty does no DMA',
  );
  await mtty.dmaLogging.stop();
  await rejectsWith(mtty.dmaLogging.start([], 4096n), 'EINVAL', 'core checks apply');

  const off = createSimDevice('sim:gpu,state-size=1M,logging=off');
  assert.equal(await off.dmaLogging.probe(), false);
  await rejectsWith(off.dmaLogging.start(RANGES, 4096n), 'ENOTTY');
  await rejectsWith(off.dmaLogging.stop(), 'ENOTTY');
  await rejectsWith(off.dmaLogging.report(0n, 4096n, 4096n, bitmap), 'ENOTTY');
});

test('P2P seam: a device initiates peer writes only outside the P2P-quiesced states', async () => {
  const received: number[] = [];
  const peer = {
    id: 'gpu1',
    p2pWrite: (_from: string, _seq: number, offset: number) => received.push(offset) > 0,
  };
  const dev = makeDevice('nic', 7);
  dev.connectPeer(peer);
  for (const [state, allowed] of [
    [MigState.RUNNING, true],
    [MigState.RUNNING_P2P, false],
    [MigState.PRE_COPY_P2P, false],
    [MigState.PRE_COPY, true],
    [MigState.STOP_COPY, false],
  ] as const) {
    await dev.setState(state);
    const write = (): boolean => dev.initiatePeerWrite(peer, state, new Uint8Array(4));
    if (allowed) write();
    else assert.throws(write, /P2P DMA/, `state ${state}`);
  }
  assert.deepEqual(received, [MigState.RUNNING, MigState.PRE_COPY]);
});
