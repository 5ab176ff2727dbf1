/**
 * Migrations that do not complete, and the switchover held by switchover-ack: the source
 * guest keeps running and nothing of it is lost; a destination never starts a guest from a
 * partial or corrupt stream, says which section and offset broke, and stays up.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import { MiB } from '../../src/memory/index.ts';
import type { MigrationOptionsInit } from '../../src/migration/index.ts';
import { ToyEntry, registerToy } from './toy-entry.ts';
import { createVmHalf, listenLoopback, waitUntil } from './vm-half.ts';
import type { VmHalf } from './vm-half.ts';

const RP: MigrationOptionsInit = {
  capabilities: [
    { capability: 'events', state: true },
    { capability: 'return-path', state: true },
  ],
};

function statuses(h: VmHalf): string[] {
  return h.events.flatMap((e) => (e.event === 'MIGRATION' ? [e.data.status] : []));
}

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-fail-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('cancel during pre-copy: cancelled, guest running, dirty logging stopped, notified', async (t) => {
  const src = await createVmHalf({
    role: 'source',
    ramMiB: 8,
    vcpus: { count: 1, workload: { dirtyRateMiBps: 64, pattern: { kind: 'uniform' } } },
    // Far below the dirty rate: the migration keeps iterating.
    options: { ...RP, parameters: { 'max-bandwidth': 16 * MiB } },
  });
  t.after(() => src.destroy());
  const tracker: string[] = [];
  src.memory.dirtyLogListeners.add({
    name: 'tracker',
    logGlobalStart: () => Promise.resolve(void tracker.push('start')),
    logGlobalStop: () => Promise.resolve(void tracker.push('stop')),
  });
  const dst = await createVmHalf({
    role: 'destination',
    ramMiB: 8,
    populateSeed: false,
    options: RP,
  });
  t.after(() => dst.destroy());

  src.migration.outgoing.migrate(await listenLoopback(dst));
  await waitUntil(() => src.migration.outgoing.stats.dirtySyncCount >= 2, 10_000, 'a second pass');
  assert.equal(src.migration.outgoing.status, 'active');
  assert.equal(src.memory.dirtyLogListeners.started, true);
  src.migration.outgoing.cancel();
  assert.equal(src.migration.outgoing.status, 'cancelling');
  assert.equal(await src.migration.outgoing.whenFinished(), 'cancelled');

  assert.equal(src.runControl.runState, RunState.RUNNING);
  assert.equal(src.vcpus!.running, true);
  assert.equal(src.memory.dirtyLogListeners.started, false);
  assert.deepEqual(tracker, ['start', 'stop']);
  assert.deepEqual(src.notified, ['precopy-setup', 'precopy-failed']);
  assert.deepEqual(statuses(src), ['setup', 'active', 'cancelling', 'cancelled']);
  assert.deepEqual(src.migration.query(), { status: 'cancelled' });

  // The destination lost its source mid-stream: failed, never started.
  assert.equal(await dst.migration.incoming.whenFinished(), 'failed');
  assert.equal(dst.runControl.runState, RunState.INMIGRATE);
  assert.match(dst.migration.query()['error-desc'] ?? '', /offset \d+/);
});

/** A destination that reads `bytes` bytes, then drops the connection. */
async function droppingDestination(t: TestContext, bytes: number): Promise<string> {
  const server = createServer((sock: Socket) => {
    let seen = 0;
    sock.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen >= bytes) sock.destroy();
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  return `tcp:127.0.0.1:${addr.port}`;
}

for (const withReturnPath of [false, true]) {
  test(`the destination goes away mid-way (return path ${withReturnPath ? 'on' : 'off'}): failed, guest running`, async (t) => {
    const src = await createVmHalf({
      role: 'source',
      ramMiB: 16,
      options: withReturnPath ? RP : { capabilities: [{ capability: 'events', state: true }] },
    });
    t.after(() => src.destroy());
    const before = src.memory.digest().sha256;
    src.migration.outgoing.migrate(await droppingDestination(t, 1 << 20));
    assert.equal(await src.migration.outgoing.whenFinished(), 'failed');
    const info = src.migration.query();
    assert.equal(info.status, 'failed');
    assert.match(info['error-desc'] ?? '', /return path|channel|EPIPE|ECONNRESET|closed/);
    assert.equal(src.runControl.runState, RunState.RUNNING);
    assert.equal(src.memory.digest().sha256, before);
    assert.equal(src.memory.dirtyLogListeners.started, false);
    assert.deepEqual(src.notified, ['precopy-setup', 'precopy-failed']);
  });
}

/** A complete stream of a small guest in a file, and the source's RAM digest. */
async function streamFile(t: TestContext): Promise<{ path: string; digest: string }> {
  const src = await createVmHalf({ role: 'source', ramMiB: 1 });
  t.after(() => src.destroy());
  const path = join(tempDir(t), 'stream.bin');
  src.migration.outgoing.migrate(`file:${path}`);
  assert.equal(await src.migration.outgoing.whenFinished(), 'completed');
  return { path, digest: src.memory.digest().sha256 };
}

async function loadFile(t: TestContext, path: string): Promise<VmHalf> {
  const dst = await createVmHalf({ role: 'destination', ramMiB: 1, populateSeed: false });
  t.after(() => dst.destroy());
  await dst.migration.incoming.start(`file:${path}`);
  await dst.migration.incoming.whenFinished();
  return dst;
}

test('an intact file stream loads and starts the guest', async (t) => {
  const { path, digest } = await streamFile(t);
  const dst = await loadFile(t, path);
  assert.equal(dst.migration.incoming.status, 'completed');
  assert.equal(dst.runControl.runState, RunState.RUNNING);
  assert.equal(dst.memory.digest().sha256, digest);
  assert.deepEqual(dst.migration.incoming.warnings, []);
});

test('a corrupted byte: the destination fails naming the section and offset, never starts', async (t) => {
  const { path } = await streamFile(t);
  const good = readFileSync(path);
  const gsAt = good.indexOf(Buffer.from('running\0', 'latin1'));
  const ramPartAt = good.indexOf(Buffer.from('0200000001', 'hex'), 60); // RAM's first PART
  const cases: { at: number; value: number; error: RegExp }[] = [
    {
      // The run-state name inside globalstate's FULL section.
      at: gsAt + 1,
      value: 0x58,
      error:
        /section 'globalstate' instance 0 \(section id 2\) at offset \d+: globalstate: 'rXnning' is not a run state/,
    },
    {
      // The flags of the first RAM record of the PART section.
      at: ramPartAt + 5 + 7,
      value: 0x40,
      error:
        /section 'ram' instance 0 \(section id 1\): ram record header at offset \d+: XBZRLE pages/,
    },
    {
      // The footer marker after RAM's START section.
      at: good.indexOf(Buffer.from('7e00000001', 'hex')),
      value: 0x7d,
      error:
        /section 'ram' instance 0 \(section id 1\): section footer at offset 62: missing section footer/,
    },
    {
      // The idstr of globalstate's FULL section.
      at: good.indexOf(Buffer.from('globalstate', 'latin1')),
      value: 0x47,
      error: /section header at offset \d+: Unknown savevm section or instance 'Globalstate' 0/,
    },
  ];
  for (const c of cases) {
    assert.ok(c.at > 0);
    const bad = Buffer.from(good);
    bad[c.at] = c.value;
    const badPath = `${path}.${c.at}`;
    writeFileSync(badPath, bad);
    const dst = await loadFile(t, badPath);
    assert.equal(dst.migration.incoming.status, 'failed', `byte ${c.at}`);
    assert.match(dst.migration.query()['error-desc'] ?? '', c.error);
    assert.equal(dst.runControl.runState, RunState.INMIGRATE, 'never started');
  }
});

test('a truncated stream fails at its end and starts nothing', async (t) => {
  const { path } = await streamFile(t);
  const good = readFileSync(path);
  writeFileSync(`${path}.cut`, good.subarray(0, good.length >> 1));
  const dst = await loadFile(t, `${path}.cut`);
  assert.equal(dst.migration.incoming.status, 'failed');
  assert.match(
    dst.migration.query()['error-desc'] ?? '',
    /section 'ram' instance 0 \(section id 1\): unexpected end of stream at offset \d+/,
  );
  assert.equal(dst.runControl.runState, RunState.INMIGRATE);
});

test('switchover-ack: no switchover before the destination acks while the guest runs', async (t) => {
  const caps: MigrationOptionsInit = {
    capabilities: [...RP.capabilities!, { capability: 'switchover-ack', state: true }],
  };
  const srcToy = new ToyEntry();
  const dstToy = new ToyEntry({ ackNeeded: true });
  const src = await createVmHalf({
    role: 'source',
    ramMiB: 4,
    options: caps,
    register: (r) => registerToy(r, srcToy),
  });
  t.after(() => src.destroy());
  const dst = await createVmHalf({
    role: 'destination',
    ramMiB: 4,
    populateSeed: false,
    options: caps,
    register: (r) => registerToy(r, dstToy),
  });
  t.after(() => dst.destroy());

  src.migration.outgoing.migrate(await listenLoopback(dst));
  // RAM converges at once (idle guest), but the toy's initial data was not acknowledged.
  await waitUntil(() => dstToy.received.length >= 5, 10_000, 'several toy iterations');
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(src.migration.outgoing.status, 'active');
  assert.equal(src.migration.query().ram?.remaining, 0);
  assert.ok(!srcToy.log.includes('complete'));

  srcToy.sendInitDataSent();
  assert.equal(await src.migration.outgoing.whenFinished(), 'completed');
  assert.equal(await dst.migration.incoming.whenFinished(), 'completed');
  const acked = dstToy.log.indexOf('load init-data-sent');
  assert.ok(acked >= 0 && acked < dstToy.log.indexOf('load complete'));
  assert.equal(dst.memory.digest().sha256, src.memory.digest().sha256);
});

test('switchover-ack: a spurious approval fails the destination, and the source with it', async (t) => {
  const caps: MigrationOptionsInit = {
    capabilities: [...RP.capabilities!, { capability: 'switchover-ack', state: true }],
  };
  const srcToy = new ToyEntry();
  const src = await createVmHalf({
    role: 'source',
    ramMiB: 1,
    options: caps,
    register: (r) => registerToy(r, srcToy),
  });
  t.after(() => src.destroy());
  const dst = await createVmHalf({
    role: 'destination',
    ramMiB: 1,
    populateSeed: false,
    options: caps,
    // Nobody needs an ack here: it is sent at once, and a later approval is spurious.
    register: (r) => registerToy(r, new ToyEntry()),
  });
  t.after(() => dst.destroy());
  srcToy.sendInitDataSent();
  src.migration.outgoing.migrate(await listenLoopback(dst));
  assert.equal(await dst.migration.incoming.whenFinished(), 'failed');
  assert.match(
    dst.migration.incoming.error?.message ?? '',
    /section 'toy' instance 0 \(section id 3\) at offset \d+: switchover approved, but no approval was pending/,
  );
  assert.equal(await src.migration.outgoing.whenFinished(), 'failed');
  assert.match(src.migration.query()['error-desc'] ?? '', /Sibling indicated error 1|return path/);
  assert.equal(src.runControl.runState, RunState.RUNNING);
  assert.equal(dst.runControl.runState, RunState.INMIGRATE);
});

test('a VM-state handler failing at the switchover fails the migration; the guest runs on', async (t) => {
  const src = await createVmHalf({ role: 'source', ramMiB: 1, options: RP });
  t.after(() => src.destroy());
  src.runControl.addVmChangeStateHandler({
    name: 'vfio 0000:00:05.0',
    priority: 0,
    handler: (running) => {
      if (!running) throw new Error('RUNNING -> STOP_COPY: EIO');
    },
  });
  const dst = await createVmHalf({
    role: 'destination',
    ramMiB: 1,
    populateSeed: false,
    options: RP,
  });
  t.after(() => dst.destroy());
  src.migration.outgoing.migrate(await listenLoopback(dst));
  assert.equal(await src.migration.outgoing.whenFinished(), 'failed');
  assert.equal(
    src.migration.query()['error-desc'],
    'stopping the VM failed: vfio 0000:00:05.0 (handler): RUNNING -> STOP_COPY: EIO',
  );
  assert.equal(src.runControl.runState, RunState.RUNNING);
  assert.equal(await dst.migration.incoming.whenFinished(), 'failed');
  assert.equal(dst.runControl.runState, RunState.INMIGRATE);
});
