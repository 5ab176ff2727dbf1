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

async function held(p: MigrationFaultPlan, signal = new AbortController().signal): Promise<number> {
  const start = performance.now();
  await p.loadObserver.loadThread?.('of dev', signal);
  return performance.now() - start;
}

test('load threads are held back from the first one on, once', async () => {
  const p = plan();
  assert.ok((await held(p)) < 20, 'nothing armed: no wait');
  const f = p.arm({ type: 'load-thread', ms: 150 });
  assert.equal(f.description, 'incoming: load threads held back 150 ms');
  const first = held(p);
  await new Promise((r) => setTimeout(r, 50));
  const [a, b] = await Promise.all([first, held(p)]);
  assert.ok(a >= 140 && a < 400, `the first waited ${a} ms`);
  assert.ok(b >= 80 && b < 150, `the second only until the same time: ${b} ms`);
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
