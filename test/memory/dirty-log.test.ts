import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnSiblingWorker } from '../../src/guest/spawn-worker.ts';
import { DirtyBitmap, DirtyLog, GiB, RamBlock } from '../../src/memory/index.ts';

test('sync moves logged bits into the bitmap and counts only the new ones', () => {
  const log = new DirtyLog(100);
  const bm = new DirtyBitmap(100);
  for (const p of [0, 31, 32, 99, 31]) log.mark(p);
  assert.equal(log.pendingCount(), 4);
  assert.equal(log.syncInto(bm), 4);
  assert.equal(log.pendingCount(), 0);
  assert.deepEqual(
    [bm.nextDirty(0), bm.nextDirty(1), bm.nextDirty(32), bm.nextDirty(33)],
    [0, 31, 32, 99],
  );
  log.mark(31);
  log.mark(50);
  assert.equal(log.syncInto(bm), 1, 'page 31 was still dirty in the bitmap');
  assert.equal(bm.dirtyCount, 5);
  log.mark(7);
  assert.equal(log.clear(), 1);
  assert.equal(log.syncInto(bm), 0);
  assert.throws(() => log.mark(100), /page 100 outside \[0, 100\)/);
  assert.throws(() => log.syncInto(new DirtyBitmap(101)), /100 pages synced into 101/);
});

test('a log attached to the same shared buffer sees the same bits', () => {
  const a = new DirtyLog(64);
  const b = new DirtyLog(64, a.buffer);
  b.mark(40);
  assert.equal(a.pendingCount(), 1);
  assert.throws(() => new DirtyLog(65, a.buffer), /65 pages need 12/);
});

test('two writer threads, syncs racing them: no write is lost, the last value always arrives', async () => {
  // The RAM handler's invariant: whatever a writer stores and then logs reaches a later sync.
  // Main plays the RAM handler: sync, then for each dirty page clear the bit and copy the
  // page's stamp. Many pages (one data word each) so that most pages are written only a few
  // times and a lost bit is rarely covered up by a later write to the same page.
  const pages = 1 << 20;
  const log = new DirtyLog(pages);
  const bm = new DirtyBitmap(pages);
  const data = new SharedArrayBuffer(pages * 4);
  const stamps = new Int32Array(data);
  const control = new SharedArrayBuffer(8);
  const ctl = new Int32Array(control);
  const workers = [1, 2].map((i) =>
    spawnSiblingWorker(import.meta.url, './dirty-writer', {
      data,
      log: log.buffer,
      control,
      seed: 0x9e3779b9 * i,
    }),
  );
  const results = workers.map((w) => Promise.all([once(w, 'message'), once(w, 'exit')]));
  const seen = new Int32Array(pages);
  const drain = (): void => {
    for (let p = bm.nextDirty(0); p >= 0; p = bm.nextDirty(p + 1)) {
      bm.testAndClear(p);
      seen[p] = stamps[p]!;
    }
  };
  const started = performance.now();
  while (Atomics.load(ctl, 1) < 2) {
    assert.ok(performance.now() - started < 20_000, 'writer threads did not start');
    await sleep(5);
  }
  const until = performance.now() + 500;
  let syncs = 0;
  while (performance.now() < until) {
    log.syncInto(bm);
    drain();
    if (++syncs % 20 === 0) await sleep(0);
  }
  Atomics.store(ctl, 0, 1);
  const writes = (await Promise.all(results)).map(([[n]]) => n as number);
  log.syncInto(bm);
  drain();
  let touched = 0;
  for (let p = 0; p < pages; p++) {
    if (stamps[p] !== 0) touched++;
    if (seen[p] !== stamps[p]) {
      assert.fail(`page ${p}: last copy has stamp ${seen[p]} but memory holds ${stamps[p]}`);
    }
  }
  assert.ok(
    writes.every((n) => n > 100_000),
    `writes per thread ${writes.join(', ')}`,
  );
  assert.equal(log.pendingCount(), 0);
  assert.ok(touched > 100_000, `${touched} pages touched`);
  assert.ok(syncs > 20, `${syncs} syncs raced the writers`);
});

test('sync cost for 1 GiB (262144 pages): all clean, 1% and all dirty', (t) => {
  const block = new RamBlock('pc.ram', GiB);
  const time = (fill: (log: DirtyLog) => void): { ms: number; fresh: number } => {
    block.bitmap.clear();
    fill(block.dirtyLog);
    const t0 = performance.now();
    const fresh = block.syncDirtyBitmap();
    return { ms: performance.now() - t0, fresh };
  };
  const runs = { clean: time(() => {}), sparse: time(() => {}), full: time(() => {}) };
  for (let i = 0; i < 3; i++) {
    runs.clean = time(() => {});
    runs.sparse = time((log) => {
      for (let p = 0; p < block.pages; p += 100) log.mark(p);
    });
    runs.full = time((log) => log.words.fill(-1));
  }
  assert.equal(runs.clean.fresh, 0);
  assert.equal(runs.sparse.fresh, Math.ceil(block.pages / 100));
  assert.equal(runs.full.fresh, block.pages);
  assert.ok(runs.full.ms < 100, `full sync ${runs.full.ms} ms`);
  t.diagnostic(
    `sync 1 GiB: clean ${runs.clean.ms.toFixed(3)} ms, 1% ${runs.sparse.ms.toFixed(3)} ms, ` +
      `all ${runs.full.ms.toFixed(3)} ms`,
  );
});

test('nextDirty scan speed over 1 GiB of pages', (t) => {
  const bm = new DirtyBitmap(GiB / 4096);
  const scan = (): { ms: number; found: number } => {
    const t0 = performance.now();
    let found = 0;
    for (let p = bm.nextDirty(0); p >= 0; p = bm.nextDirty(p + 1)) found++;
    return { ms: performance.now() - t0, found };
  };
  const measure = (): { ms: number; found: number } => {
    let best = scan();
    for (let i = 0; i < 4; i++) {
      const r = scan();
      if (r.ms < best.ms) best = r;
    }
    return best;
  };
  const empty = measure();
  for (let p = 0; p < bm.pages; p += 100) bm.setDirty(p);
  const sparse = measure();
  bm.setDirty(0, bm.pages);
  const full = measure();
  assert.deepEqual([empty.found, sparse.found, full.found], [0, 2622, bm.pages]);
  t.diagnostic(
    `nextDirty over 262144 pages: empty ${empty.ms.toFixed(3)} ms, 1% ${sparse.ms.toFixed(3)} ms, ` +
      `all ${full.ms.toFixed(2)} ms (${((full.ms * 1e6) / bm.pages).toFixed(1)} ns/page)`,
  );
});
