/**
 * The load-thread fault: every load thread of the next incoming migration is held back for
 * `ms` from the start of the first one, a failing load releases them at once, and a fault
 * that fired holds nothing of a later migration.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  MigrationFaultPlan,
  checkFaultSpec,
  describeFault,
} from '../../src/migration/faults/index.ts';

function plan(): MigrationFaultPlan {
  return new MigrationFaultPlan({ kill: () => assert.fail('nothing kills here') });
}

/** When a load thread started and when it was let go (performance.now()). */
async function span(
  p: MigrationFaultPlan,
  signal = new AbortController().signal,
): Promise<{ start: number; end: number }> {
  const start = performance.now();
  await p.loadObserver.loadThread?.('of dev', signal);
  return { start, end: performance.now() };
}

/** How long a load thread was held back (ms). */
async function held(p: MigrationFaultPlan, signal?: AbortSignal): Promise<number> {
  const { start, end } = await span(p, signal);
  return end - start;
}

test('load threads are held back from the first one on, once', async () => {
  const p = plan();
  assert.ok((await held(p)) < 20, 'nothing armed: no wait');
  const f = p.arm({ type: 'load-thread', ms: 150 });
  assert.equal(f.description, 'incoming: load threads held back 150 ms');
  const first = span(p);
  await new Promise((r) => setTimeout(r, 50));
  const [one, two] = await Promise.all([first, span(p)]);
  const a = one.end - one.start;
  const b = two.end - two.start;
  assert.ok(a >= 140 && a < 400, `the first waited ${a} ms`);
  // The second started later (by however late the timer fired) and is let go with the first.
  assert.ok(two.start - one.start >= 45, 'the second started later');
  assert.ok(
    b >= 150 - (two.start - one.start) - 10 && b < 150,
    `the second only until the same time: ${b} ms`,
  );
  assert.ok(Math.abs(two.end - one.end) < 20, 'both are let go together');
  assert.equal(f.state, 'fired');
  assert.ok((await held(p)) < 20, 'a later migration is not held');
});

test('a failing load releases held load threads at once', async () => {
  const p = plan();
  p.arm({ type: 'load-thread', ms: 5000 });
  const abort = new AbortController();
  const waiting = held(p, abort.signal);
  setTimeout(() => abort.abort(new Error('load failed')), 30);
  assert.ok((await waiting) < 1000);
});

test('a load-thread fault needs ms >= 1', () => {
  assert.throws(() => checkFaultSpec({ type: 'load-thread', ms: 0 }), /ms must be an integer >= 1/);
  assert.equal(
    describeFault({ type: 'load-thread', ms: 5 }),
    'incoming: load threads held back 5 ms',
  );
});
