/**
 * Save → load through a real TCP loopback socket between two VM halves in this process, with
 * vCPU worker threads dirtying the source's RAM during pre-copy (run from dist/: workers do
 * not load under tsx).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { test } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import { MiB } from '../../src/memory/index.ts';
import type { MigrationInfo, MigrationOptionsInit } from '../../src/migration/index.ts';
import { ToyEntry, registerToy } from './toy-entry.ts';
import { createVmHalf, listenLoopback, waitUntil } from './vm-half.ts';

const CAPS: MigrationOptionsInit = {
  capabilities: [
    { capability: 'events', state: true },
    { capability: 'return-path', state: true },
  ],
};

test(
  'vCPUs dirty RAM during pre-copy; the destination RAM equals the source at switchover, ' +
    'and a toy device is set up, iterated, completed and saved in order on both sides',
  { timeout: 60_000 },
  async (t) => {
    const srcToy = new ToyEntry({ iterations: 3 });
    const dstToy = new ToyEntry();
    const src = await createVmHalf({
      role: 'source',
      ramMiB: 32,
      vcpus: { count: 2, workload: { dirtyRateMiBps: 24, pattern: { kind: 'uniform' } } },
      options: { ...CAPS, parameters: { 'max-bandwidth': 64 * MiB } },
      register: (r) => registerToy(r, srcToy),
    });
    t.after(() => src.destroy());
    const dst = await createVmHalf({
      role: 'destination',
      ramMiB: 32,
      populateSeed: false,
      options: CAPS,
      register: (r) => registerToy(r, dstToy),
    });
    t.after(() => dst.destroy());

    src.migration.outgoing.migrate(await listenLoopback(dst));
    // query-migrate while active: times, expected downtime, RAM counters, no downtime yet.
    await waitUntil(() => src.migration.outgoing.status === 'active', 10_000, 'active');
    const active: MigrationInfo = src.migration.query();
    assert.equal(active.status, 'active');
    assert.equal(typeof active['total-time'], 'number');
    assert.equal(typeof active['setup-time'], 'number');
    assert.equal(active['expected-downtime'], 300);
    assert.equal(active.downtime, undefined);
    assert.equal(active.ram?.total, 32 * MiB);
    assert.equal(active.ram?.['page-size'], 4096);
    assert.ok(active.ram['dirty-sync-count'] >= 1);

    assert.equal(await src.migration.outgoing.whenFinished(), 'completed');
    assert.equal(await dst.migration.incoming.whenFinished(), 'completed');

    // The vCPUs really wrote during pre-copy, and more than one pass was needed.
    assert.ok(src.vcpus!.stats().pagesWritten > 0);
    const done = src.migration.query();
    assert.equal(done.status, 'completed');
    assert.equal(typeof done.downtime, 'number');
    assert.equal(done['expected-downtime'], undefined);
    const ram = done.ram!;
    assert.ok(ram['dirty-sync-count'] >= 3, `dirty-sync-count ${ram['dirty-sync-count']}`);
    assert.equal(ram.remaining, 0);
    assert.ok(ram.transferred >= ram['normal-bytes']);
    assert.ok(ram['precopy-bytes'] > 0 && ram['downtime-bytes'] > 0);
    assert.equal(ram.normal + ram.duplicate >= (32 * MiB) / 4096, true);

    // Both guests are stopped now (source postmigrate, destination without vCPUs).
    assert.equal(src.runControl.runState, RunState.POSTMIGRATE);
    assert.equal(dst.runControl.runState, RunState.RUNNING);
    assert.equal(dst.memory.digest().sha256, src.memory.digest().sha256);

    // Hook order on each side.
    const iterations = srcToy.log.filter((l) => l.startsWith('iterate')).length;
    assert.ok(iterations >= 3);
    assert.deepEqual(srcToy.log, [
      'prepare running=true',
      'setup',
      ...Array.from({ length: iterations }, (_, i) => `iterate ${i + 1}`),
      'complete',
      'state',
      'cleanup',
    ]);
    assert.deepEqual(dstToy.log, [
      'load-setup',
      'load setup v1',
      ...Array.from({ length: iterations }, (_, i) => `load iterate ${i + 1}`),
      'load complete',
      'load state',
      'load-cleanup',
    ]);

    // Events and notifiers.
    const statuses = src.events.flatMap((e) => (e.event === 'MIGRATION' ? [e.data.status] : []));
    assert.deepEqual(statuses, ['setup', 'active', 'device', 'completed']);
    const passes = src.events.flatMap((e) => (e.event === 'MIGRATION_PASS' ? [e.data.pass] : []));
    assert.deepEqual(
      passes,
      Array.from({ length: passes.length }, (_, i) => i + 1),
    );
    assert.equal(passes.length, ram['dirty-sync-count']);
    assert.deepEqual(src.notified, ['precopy-setup', 'precopy-done']);
    const dstStatuses = dst.events.flatMap((e) => (e.event === 'MIGRATION' ? [e.data.status] : []));
    assert.deepEqual(dstStatuses, ['setup', 'active', 'completed']);
  },
);

async function migrateSmall(opts: {
  pauseSource?: boolean;
  autostart?: boolean;
  storeGlobalState?: boolean;
}): Promise<{ src: RunState; dst: RunState }> {
  const src = await createVmHalf({
    role: 'source',
    ramMiB: 1,
    options: { properties: { 'store-global-state': opts.storeGlobalState ?? true } },
  });
  const dst = await createVmHalf({
    role: 'destination',
    ramMiB: 1,
    populateSeed: false,
    autostart: opts.autostart,
  });
  try {
    if (opts.pauseSource === true) await src.runControl.vmStop(RunState.PAUSED);
    src.migration.outgoing.migrate(await listenLoopback(dst));
    assert.equal(await src.migration.outgoing.whenFinished(), 'completed');
    assert.equal(await dst.migration.incoming.whenFinished(), 'completed');
    assert.equal(dst.memory.digest().sha256, src.memory.digest().sha256);
    return { src: src.runControl.runState, dst: dst.runControl.runState };
  } finally {
    await src.destroy();
    await dst.destroy();
  }
}

test('the destination runs only if the source ran (globalstate) and autostart is on', async () => {
  assert.deepEqual(await migrateSmall({}), { src: 'postmigrate', dst: 'running' });
  assert.deepEqual(await migrateSmall({ autostart: false }), {
    src: 'postmigrate',
    dst: 'paused',
  });
  assert.deepEqual(await migrateSmall({ pauseSource: true }), {
    src: 'postmigrate',
    dst: 'paused',
  });
  // Without globalstate in the stream, QEMU starts the guest.
  assert.deepEqual(await migrateSmall({ pauseSource: true, storeGlobalState: false }), {
    src: 'postmigrate',
    dst: 'running',
  });
});

test('an unlimited migration leaves the event loop free (QMP is never starved)', async (t) => {
  const caps: MigrationOptionsInit = { ...CAPS, parameters: { 'max-bandwidth': 0 } };
  const src = await createVmHalf({ role: 'source', ramMiB: 64, options: caps });
  t.after(() => src.destroy());
  const dst = await createVmHalf({
    role: 'destination',
    ramMiB: 64,
    populateSeed: false,
    options: CAPS,
  });
  t.after(() => dst.destroy());
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  src.migration.outgoing.migrate(await listenLoopback(dst));
  assert.equal(await src.migration.outgoing.whenFinished(), 'completed');
  delay.disable();
  // Passes are bounded (~50 ms of RAM, then a yield); both halves share this event loop.
  const maxMs = delay.max / 1e6;
  assert.ok(maxMs < 150, `the event loop was blocked for ${maxMs.toFixed(0)} ms`);
  assert.equal(dst.memory.digest().sha256, src.memory.digest().sha256);
});

test('over a UNIX socket, with the return path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-unix-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const src = await createVmHalf({ role: 'source', ramMiB: 4, options: CAPS });
  t.after(() => src.destroy());
  const dst = await createVmHalf({
    role: 'destination',
    ramMiB: 4,
    populateSeed: false,
    options: CAPS,
  });
  t.after(() => dst.destroy());
  const uri = `unix:${join(dir, 'mig.sock')}`;
  await dst.migration.incoming.start(uri);
  assert.deepEqual(dst.migration.query()['socket-address'], [
    { type: 'unix', path: join(dir, 'mig.sock') },
  ]);
  src.migration.outgoing.migrate(uri);
  assert.equal(await src.migration.outgoing.whenFinished(), 'completed');
  assert.equal(await dst.migration.incoming.whenFinished(), 'completed');
  assert.equal(dst.memory.digest().sha256, src.memory.digest().sha256);
});
