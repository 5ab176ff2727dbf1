/**
 * The fault plan on two VM halves in this process (RAM only, return path on): channel faults
 * at a byte count and at each phase on either side, load faults, the stall timeout, the
 * destination's SHUT held or lost, and what the plan refuses. Every row checks that exactly
 * the guest the promise names runs afterwards.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { RunState } from '../../src/guest/index.ts';
import { MigrationFaultPlan } from '../../src/migration/faults/index.ts';
import type { MigrationFaultSpec } from '../../src/migration/faults/index.ts';
import type { MigrationOptionsInit } from '../../src/migration/index.ts';
import { createVmHalf, listenLoopback, waitUntil } from '../migration/vm-half.ts';
import type { VmHalf } from '../migration/vm-half.ts';

const STALL_MS = 300;

function options(stallMs = STALL_MS): MigrationOptionsInit {
  return {
    capabilities: [{ capability: 'return-path', state: true }],
    parameters: { 'x-stall-timeout': stallMs, 'max-bandwidth': 64 << 20 },
  };
}

interface Pair {
  src: VmHalf;
  dst: VmHalf;
  srcFaults: MigrationFaultPlan;
  dstFaults: MigrationFaultPlan;
  uri: string;
}

/** A source (16 MiB, running) and a destination listening, each with its own plan. */
async function pair(t: TestContext, stallMs = STALL_MS): Promise<Pair> {
  const srcFaults = new MigrationFaultPlan({ kill: () => assert.fail('nothing kills here') });
  const dstFaults = new MigrationFaultPlan({ kill: () => assert.fail('nothing kills here') });
  const src = await createVmHalf({
    role: 'source',
    ramMiB: 16,
    options: options(stallMs),
    outgoing: { connect: srcFaults.connect },
  });
  t.after(() => src.destroy());
  const dst = await createVmHalf({
    role: 'destination',
    ramMiB: 16,
    populateSeed: false,
    options: options(stallMs),
    incoming: { listen: dstFaults.listen, loadObserver: dstFaults.loadObserver },
  });
  t.after(() => dst.destroy());
  srcFaults.bind(src.migration);
  dstFaults.bind(dst.migration);
  return { src, dst, srcFaults, dstFaults, uri: await listenLoopback(dst) };
}

/** Both sides finished; returns [source status, destination status]. */
async function outcome(p: Pair): Promise<[string, string]> {
  p.src.migration.outgoing.migrate(p.uri);
  const s = await p.src.migration.outgoing.whenFinished();
  const d = await p.dst.migration.incoming.whenFinished();
  return [s, d];
}

/** The promise for a failed migration: the source runs, the destination never did. */
function sourceKeepsTheGuest(p: Pair): void {
  assert.equal(p.src.runControl.runState, RunState.RUNNING, 'the source guest runs');
  assert.notEqual(p.dst.runControl.runState, RunState.RUNNING, 'the destination never runs');
}

const channel = (
  side: 'outgoing' | 'incoming',
  action: 'cut' | 'reset' | 'stall' | 'kill',
  trigger: Extract<MigrationFaultSpec, { type: 'channel' }>['trigger'],
  direction?: 'in' | 'out',
): MigrationFaultSpec => ({ type: 'channel', side, action, trigger, direction });

test('a cut at byte N on the source: N bytes reach the destination; both fail; the source runs on', async (t) => {
  const p = await pair(t);
  const f = p.srcFaults.arm(channel('outgoing', 'cut', { bytes: 300_000, direction: 'out' }));
  assert.deepEqual(await outcome(p), ['failed', 'failed']);
  assert.equal(f.state, 'fired');
  assert.equal(f.firedAt?.bytesOut, 300_000);
  assert.equal(f.firedAt?.phase, 'pre-copy');
  assert.match(p.src.migration.outgoing.error?.message ?? '', /cut by fault injection/);
  sourceKeepsTheGuest(p);
});

for (const phase of ['setup', 'pre-copy', 'stop-and-copy', 'after-eof'] as const) {
  test(`a reset by the destination at ${phase}: both fail, the source runs on`, async (t) => {
    const p = await pair(t);
    const f = p.dstFaults.arm(channel('incoming', 'reset', { phase }));
    assert.deepEqual(await outcome(p), ['failed', 'failed']);
    assert.equal(f.state, 'fired');
    assert.equal(f.firedAt?.phase, phase);
    sourceKeepsTheGuest(p);
  });
}

for (const phase of ['setup', 'pre-copy', 'stop-and-copy'] as const) {
  test(`a reset by the source at ${phase}: both fail, the source runs on`, async (t) => {
    const p = await pair(t);
    const f = p.srcFaults.arm(channel('outgoing', 'reset', { phase }));
    assert.deepEqual(await outcome(p), ['failed', 'failed']);
    assert.equal(f.firedAt?.phase, phase);
    sourceKeepsTheGuest(p);
  });
}

test('the source loses its channel after its EOF: in doubt, it stays paused; never two guests', async (t) => {
  const p = await pair(t);
  // Devices take a few ms to take their state at the start; a handler stands in for them, so
  // the destination sees the channel go before its SHUT and does not run either.
  p.dst.runControl.addVmChangeStateHandler({
    name: 'slow device',
    priority: 0,
    handler: () => new Promise((r) => setTimeout(r, 20)),
  });
  p.srcFaults.arm(channel('outgoing', 'cut', { phase: 'after-eof' }));
  assert.deepEqual(await outcome(p), ['failed', 'failed']);
  assert.match(
    p.dst.migration.incoming.error?.message ?? '',
    /the channel was closed by the source before the destination confirmed the migration \(SHUT\)/,
  );
  assert.equal(p.src.runControl.runState, RunState.PAUSED, 'in doubt');
  assert.match(
    p.src.migration.outgoing.error?.message ?? '',
    /cut by fault injection .*; in doubt: .* may be running the guest/,
  );
  assert.notEqual(p.dst.runControl.runState, RunState.RUNNING);
});

test('the load of a section fails where asked, named with its offset', async (t) => {
  const p = await pair(t);
  p.dstFaults.arm({ type: 'load', section: 'ram', sectionType: 'part', nth: 1 });
  assert.deepEqual(await outcome(p), ['failed', 'failed']);
  assert.match(
    p.dst.migration.incoming.error?.message ?? '',
    /section 'ram' instance 0 \(section id \d+\) at offset \d+: load of PART 'ram' #1 fails \(fault injection\)/,
  );
  assert.match(p.src.migration.outgoing.error?.message ?? '', /Sibling indicated error 1/);
  sourceKeepsTheGuest(p);
});

test('a stalled channel: both sides give up after x-stall-timeout instead of waiting forever', async (t) => {
  const p = await pair(t);
  p.srcFaults.arm(channel('outgoing', 'stall', { phase: 'pre-copy' }, 'out'));
  const start = performance.now();
  assert.deepEqual(await outcome(p), ['failed', 'failed']);
  assert.ok(performance.now() - start < 10 * STALL_MS, 'bounded by the stall timeout');
  assert.match(
    p.src.migration.outgoing.error?.message ?? '',
    /the destination takes no data for 300 ms \(x-stall-timeout\)/,
  );
  // Whichever side's timer fires first: the destination's own, or the source closing.
  assert.match(
    p.dst.migration.incoming.error?.message ?? '',
    /nothing received from the source for 300 ms \(x-stall-timeout\)|unexpected end of stream/,
  );
  sourceKeepsTheGuest(p);
});

test('the destination holds its SHUT: it gives up and never runs; the source sees it go and runs on', async (t) => {
  const p = await pair(t);
  p.dstFaults.arm(channel('incoming', 'stall', { phase: 'after-eof' }, 'out'));
  assert.deepEqual(await outcome(p), ['failed', 'failed']);
  assert.match(
    p.dst.migration.incoming.error?.message ?? '',
    /the source reads nothing of the return path for 300 ms/,
  );
  sourceKeepsTheGuest(p);
});

test('a SHUT lost after the whole stream: the source stays paused (in doubt), the destination runs', async (t) => {
  const p = await pair(t);
  p.srcFaults.arm(channel('outgoing', 'stall', { phase: 'after-eof' }, 'in'));
  assert.deepEqual(await outcome(p), ['failed', 'completed']);
  assert.match(
    p.src.migration.outgoing.error?.message ?? '',
    /did not end the migration \(SHUT\) within 600 ms; in doubt: the whole stream went out and no SHUT came back, so the destination may be running the guest, which stays paused here \(cont resumes it\)$/,
  );
  assert.equal(p.src.runControl.runState, RunState.PAUSED, 'not run twice');
  assert.equal(p.dst.runControl.runState, RunState.RUNNING);
});

test('x-stall-timeout 0 waits as QEMU does: a held SHUT holds the source in device; a cancel leaves it in doubt', async (t) => {
  const p = await pair(t, 0);
  p.dstFaults.arm(channel('incoming', 'stall', { phase: 'after-eof' }, 'out'));
  p.src.migration.outgoing.migrate(p.uri);
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(p.src.migration.outgoing.status, 'device');
  p.src.migration.outgoing.cancel();
  assert.equal(await p.src.migration.outgoing.whenFinished(), 'cancelled');
  // Cancelled with the whole stream out and no SHUT: in doubt, until an operator says `cont`.
  assert.equal(p.src.runControl.runState, RunState.PAUSED);
  await p.dst.migration.incoming.close();
  assert.notEqual(p.dst.runControl.runState, RunState.RUNNING);
  assert.deepEqual(await p.src.runControl.vmStart(), []);
  assert.equal(p.src.runControl.runState, RunState.RUNNING);
});

test('what the plan refuses, and a cut now on a channel opened without faults', async (t) => {
  const p = await pair(t);
  assert.throws(
    () => p.dstFaults.arm(channel('incoming', 'cut', { phase: 'switchover-wait' })),
    /the destination cannot see the source's switchover wait/,
  );
  assert.throws(
    () =>
      p.srcFaults.arm({
        type: 'channel',
        side: 'outgoing',
        action: 'delay',
        trigger: { now: true },
      }),
    /a delay needs ms > 0/,
  );
  assert.throws(
    () => p.srcFaults.arm(channel('outgoing', 'cut', { now: true })),
    /no outgoing migration channel is open/,
  );
  p.src.migration.outgoing.migrate(p.uri);
  await waitUntil(() => p.src.migration.outgoing.status === 'active', 5000, 'pre-copy');
  assert.throws(
    () => p.srcFaults.arm(channel('outgoing', 'stall', { now: true })),
    /opened with no fault armed, so it has no fault proxy/,
  );
  p.srcFaults.arm(channel('outgoing', 'cut', { now: true }));
  assert.equal(await p.src.migration.outgoing.whenFinished(), 'failed');
  assert.equal(await p.dst.migration.incoming.whenFinished(), 'failed');
  sourceKeepsTheGuest(p);
});
