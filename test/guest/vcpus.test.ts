import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  RunState,
  Vcpus,
  type VcpusOptions,
  VmRunControl,
  populateRam,
} from '../../src/guest/index.ts';
import { GuestMemory, MiB, TARGET_PAGE_SIZE } from '../../src/memory/index.ts';

const PAGES_PER_MIB = MiB / TARGET_PAGE_SIZE;

/** vCPUs on `memory`, destroyed when the test ends. */
async function vcpusFor(t: TestContext, memory: GuestMemory, options: VcpusOptions) {
  const vcpus = await Vcpus.create(memory, options);
  t.after(() => vcpus.destroy());
  return vcpus;
}

/** Every page dirty in the migration bitmaps after a sync, as global page indices. */
function dirtyPages(memory: GuestMemory): number[] {
  memory.syncDirtyBitmap();
  const out: number[] = [];
  let base = 0;
  for (const b of memory.blocks) {
    for (let p = b.bitmap.nextDirty(0); p >= 0; p = b.bitmap.nextDirty(p + 1)) out.push(base + p);
    base += b.pages;
  }
  return out;
}

test('achieved dirty rate is close to the configured one (2 vCPUs)', async (t) => {
  const memory = GuestMemory.pc(64 * MiB);
  for (const rate of [32, 512]) {
    const vcpus = await vcpusFor(t, memory, {
      count: 2,
      workload: { dirtyRateMiBps: rate, pattern: { kind: 'uniform' } },
    });
    vcpus.resumeAll();
    await sleep(600);
    await vcpus.pauseAll();
    const s = vcpus.stats();
    t.diagnostic(
      `configured ${rate} MiB/s, achieved ${s.achievedMiBps.toFixed(1)} MiB/s over ${s.runningMs.toFixed(0)} ms`,
    );
    assert.ok(
      s.achievedMiBps > rate * 0.6 && s.achievedMiBps < rate * 1.2,
      `achieved ${s.achievedMiBps} MiB/s for ${rate}`,
    );
    const [a, b] = s.vcpus;
    assert.ok(Math.abs(a!.pagesWritten - b!.pagesWritten) < 0.3 * s.pagesWritten, 'even split');
    await vcpus.destroy();
  }
});

test('unthrottled vCPUs: achieved page-write rate with 1 and 2 threads', async (t) => {
  const memory = GuestMemory.pc(256 * MiB);
  for (const count of [1, 2]) {
    const vcpus = await vcpusFor(t, memory, {
      count,
      workload: { dirtyRateMiBps: 'max', pattern: { kind: 'uniform' } },
    });
    vcpus.resumeAll();
    await sleep(500);
    await vcpus.pauseAll();
    const s = vcpus.stats();
    t.diagnostic(
      `${count} vCPU(s) unthrottled: ${s.achievedMiBps.toFixed(0)} MiB/s ` +
        `(${((s.pagesWritten / s.runningMs) * 1000).toFixed(0)} pages/s)`,
    );
    assert.ok(s.achievedMiBps > 100, `${s.achievedMiBps} MiB/s`);
    await vcpus.destroy();
  }
});

test('sequential: each vCPU sweeps its own slice from its start', async (t) => {
  const memory = GuestMemory.pc(16 * MiB); // 4096 pages, slices [0, 2048) and [2048, 4096)
  const budget = 700;
  const vcpus = await vcpusFor(t, memory, {
    count: 2,
    workload: { dirtyRateMiBps: 'max', pattern: { kind: 'sequential' }, pageBudget: budget },
  });
  vcpus.resumeAll();
  while (vcpus.stats().pagesWritten < 2 * budget) await sleep(5);
  await vcpus.pauseAll();
  const expected = [
    ...Array.from({ length: budget }, (_, i) => i),
    ...Array.from({ length: budget }, (_, i) => 2048 + i),
  ];
  assert.deepEqual(dirtyPages(memory), expected);
});

test('hot: every write falls inside the hot window, which gets well covered', async (t) => {
  const memory = GuestMemory.flat([
    { idstr: 'ram0', size: 8 * MiB },
    { idstr: 'ram1', size: 24 * MiB, gpa: 16 * MiB },
  ]);
  const vcpus = await vcpusFor(t, memory, {
    count: 2,
    workload: {
      dirtyRateMiBps: 'max',
      pattern: { kind: 'hot', sizeMiB: 4, offsetMiB: 6 }, // spans the end of ram0 into ram1
      pageBudget: 20_000,
    },
  });
  vcpus.resumeAll();
  while (vcpus.stats().pagesWritten < 40_000) await sleep(5);
  await vcpus.pauseAll();
  const dirty = dirtyPages(memory);
  const lo = 6 * PAGES_PER_MIB;
  const hi = 10 * PAGES_PER_MIB;
  assert.ok(
    dirty.every((p) => p >= lo && p < hi),
    `outside the window: ${dirty.find((p) => p < lo || p >= hi)}`,
  );
  assert.ok(dirty.length > 0.95 * (hi - lo), `${dirty.length} of ${hi - lo} hot pages`);
  assert.ok(dirty.some((p) => p < 8 * PAGES_PER_MIB) && dirty.some((p) => p >= 8 * PAGES_PER_MIB));
});

test('uniform reaches every block; zeroShare 1 leaves zero pages, 0 leaves data pages', async (t) => {
  const memory = GuestMemory.flat([
    { idstr: 'ram0', size: 4 * MiB },
    { idstr: 'ram1', size: 4 * MiB },
  ]);
  populateRam(memory, { zeroShare: 0 });
  for (const zeroShare of [1, 0]) {
    const vcpus = await vcpusFor(t, memory, {
      count: 1,
      workload: { dirtyRateMiBps: 'max', pattern: { kind: 'uniform' }, zeroShare, pageBudget: 500 },
    });
    vcpus.resumeAll();
    while (vcpus.stats().pagesWritten < 500) await sleep(5);
    await vcpus.pauseAll();
    const s = vcpus.stats();
    assert.equal(s.zeroPagesWritten, zeroShare * 500);
    for (const b of memory.blocks) {
      b.syncDirtyBitmap();
      assert.ok(b.bitmap.dirtyCount > 100, `${b.idstr}: ${b.bitmap.dirtyCount} dirty pages`);
      for (let p = b.bitmap.nextDirty(0); p >= 0; p = b.bitmap.nextDirty(p + 1)) {
        assert.equal(b.isZeroPage(p), zeroShare === 1, `${b.idstr} page ${p}`);
        b.bitmap.testAndClear(p);
      }
    }
    await vcpus.destroy();
  }
});

test('a seed fixes what one vCPU writes', async (t) => {
  const run = async (seed: number): Promise<string> => {
    const memory = GuestMemory.pc(8 * MiB);
    const vcpus = await vcpusFor(t, memory, {
      count: 1,
      workload: {
        dirtyRateMiBps: 'max',
        pattern: { kind: 'uniform' },
        zeroShare: 0.2,
        seed,
        pageBudget: 3000,
      },
    });
    vcpus.resumeAll();
    while (vcpus.stats().pagesWritten < 3000) await sleep(5);
    await vcpus.destroy();
    return memory.digest().sha256;
  };
  const a = await run(7);
  assert.equal(await run(7), a);
  assert.notEqual(await run(8), a);
});

test('pauseAll: RAM and the dirty log stay still until resumeAll', async (t) => {
  const memory = GuestMemory.pc(32 * MiB);
  const vcpus = await vcpusFor(t, memory, {
    count: 2,
    workload: { dirtyRateMiBps: 'max', pattern: { kind: 'uniform' }, zeroShare: 0.1 },
  });
  vcpus.resumeAll();
  await sleep(100);
  await vcpus.pauseAll();
  const frozen = memory.digest().sha256;
  const pending = memory.blocks[0]!.dirtyLog.pendingCount();
  const written = vcpus.stats().pagesWritten;
  await sleep(300);
  assert.equal(memory.digest().sha256, frozen);
  assert.equal(memory.blocks[0]!.dirtyLog.pendingCount(), pending);
  assert.equal(vcpus.stats().pagesWritten, written);
  assert.ok(vcpus.stats().vcpus.every((v) => v.state === 'parked'));
  vcpus.resumeAll();
  await sleep(50);
  assert.notEqual(memory.digest().sha256, frozen);
  assert.ok(vcpus.stats().pagesWritten > written);
  await vcpus.pauseAll();
});

test('back-to-back resume/pause: each pause still means no more writes', async (t) => {
  const memory = GuestMemory.pc(4 * MiB);
  const vcpus = await vcpusFor(t, memory, {
    count: 2,
    workload: { dirtyRateMiBps: 'max', pattern: { kind: 'uniform' } },
  });
  const block = memory.blocks[0]!;
  for (let i = 0; i < 60; i++) {
    vcpus.resumeAll();
    if (i % 3 === 0) await sleep(1);
    await vcpus.pauseAll();
    const before = block.dirtyLog.pendingCount();
    const digest = block.digest();
    await sleep(2);
    assert.equal(block.digest(), digest, `cycle ${i}`);
    assert.equal(block.dirtyLog.pendingCount(), before);
    block.dirtyLog.clear();
  }
});

test('vmStop parks the vCPUs before handlers run; vmStart resumes them after', async (t) => {
  const memory = GuestMemory.pc(16 * MiB);
  const vcpus = await vcpusFor(t, memory, {
    count: 2,
    workload: { dirtyRateMiBps: 'max', pattern: { kind: 'uniform' } },
  });
  const vm = new VmRunControl({ vcpus });
  const seen: string[] = [];
  vm.addVmChangeStateHandler({
    priority: 0,
    handler: async (running) => {
      const a = vcpus.stats().pagesWritten;
      await sleep(30);
      const b = vcpus.stats().pagesWritten;
      seen.push(`${running ? 'start' : 'stop'}: ${a === b ? 'still' : 'moving'}`);
    },
  });
  await vm.vmStart();
  await sleep(30);
  await vm.vmStop(RunState.FINISH_MIGRATE);
  const digest = memory.digest().sha256;
  await sleep(50);
  assert.equal(memory.digest().sha256, digest);
  await vm.vmStart();
  await sleep(30);
  assert.notEqual(memory.digest().sha256, digest);
  assert.deepEqual(seen, ['start: still', 'stop: still', 'start: still']);
});

test('a crashing vCPU is reported, and pausing does not wait for it', async (t) => {
  const memory = GuestMemory.pc(8 * MiB);
  const vcpus = await vcpusFor(t, memory, {
    count: 2,
    workload: { dirtyRateMiBps: 64, pattern: { kind: 'uniform' } },
  });
  const crashed = new Promise<[number, Error]>((resolve) =>
    vcpus.onCrash((i, e) => resolve([i, e])),
  );
  vcpus.resumeAll();
  vcpus.injectFault(1);
  // vCPU threads do not keep the event loop alive; this timer does, and bounds the wait.
  const timer = setTimeout(() => assert.fail('no crash report within 10 s'), 10_000);
  const [index, error] = await crashed.finally(() => clearTimeout(timer));
  assert.equal(index, 1);
  assert.match(error.message, /vCPU 1: injected fault after \d+ page writes/);
  await vcpus.pauseAll();
  assert.deepEqual(
    vcpus.stats().vcpus.map((v) => v.state),
    ['parked', 'crashed'],
  );
  assert.equal(vcpus.crashes.length, 1);
  await vcpus.destroy();
  assert.deepEqual(
    vcpus.stats().vcpus.map((v) => v.state),
    ['exited', 'crashed'],
  );
  assert.throws(() => vcpus.injectFault(2), /no vCPU 2/);
});

test('bad workloads are refused before any thread starts', async () => {
  const memory = GuestMemory.pc(8 * MiB);
  const bad = (workload: unknown, count = 1) =>
    Vcpus.create(memory, { count, workload: workload as VcpusOptions['workload'] });
  await assert.rejects(
    bad({ dirtyRateMiBps: -1, pattern: { kind: 'uniform' } }),
    /dirtyRateMiBps: -1/,
  );
  await assert.rejects(
    bad({ dirtyRateMiBps: 1, pattern: { kind: 'zigzag' } }),
    /pattern.kind: "zigzag"/,
  );
  await assert.rejects(
    bad({ dirtyRateMiBps: 1, pattern: { kind: 'hot', sizeMiB: 8, offsetMiB: 1 } }),
    /inside the guest's 8 MiB of RAM/,
  );
  await assert.rejects(
    bad({ dirtyRateMiBps: 1, pattern: { kind: 'uniform' }, zeroShare: 2 }),
    /zeroShare: 2/,
  );
  await assert.rejects(bad({ dirtyRateMiBps: 1, pattern: { kind: 'uniform' } }, 65), /count 65/);
});

test('a process with vCPUs exits by itself once they are destroyed, or even if they are not', async () => {
  const child = fileURLToPath(
    new URL(`./vcpu-exit-child${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
  );
  const execArgv = import.meta.url.endsWith('.ts') ? ['--import', 'tsx'] : [];
  for (const mode of ['destroy', 'leave-running']) {
    const { stdout } = await promisify(execFile)(process.execPath, [...execArgv, child, mode], {
      timeout: 30_000,
    });
    assert.match(stdout, new RegExp(`^${mode}: ran \\d+ pages, left\n$`));
  }
});
