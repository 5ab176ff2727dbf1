/**
 * x-stall-timeout: the parameter (default, bounds, 0) and the watchdog's rules — a counter
 * standing still while something is expected fires once, progress or idleness never does.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MigrationOptions } from '../../src/migration/index.ts';
import { StallWatchdog, stallWatchdog } from '../../src/migration/stall-watchdog.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('x-stall-timeout: 30 s by default, 0 allowed, at most a day, an integer', () => {
  const o = new MigrationOptions();
  assert.equal(o.parameters['x-stall-timeout'], 30_000);
  o.setParameters({ 'x-stall-timeout': 0 });
  assert.equal(o.queryParameters()['x-stall-timeout'], 0);
  assert.throws(
    () => o.setParameters({ 'x-stall-timeout': 86_400_001 }),
    /^Error: Parameter 'x-stall-timeout' expects a value between 0 and 86400000 ms$/,
  );
  assert.throws(
    () => o.setParameters({ 'x-stall-timeout': 1.5 }),
    /Invalid parameter type for 'x-stall-timeout', expected: integer/,
  );
  assert.equal(
    stallWatchdog(0, () => assert.fail('never')),
    null,
    '0 waits forever',
  );
});

test('the watchdog fires once when a counter stands still, never while it moves or idles', async () => {
  const fired: string[] = [];
  const dog = new StallWatchdog(80, (err) => fired.push(err.message));
  let moving = 0;
  const idle = (): number | null => null;
  let stuck = 7;
  let stuckWatched = false;
  dog.watch('moving', () => moving++);
  dog.watch('idle', idle);
  dog.watch('stuck', () => (stuckWatched ? stuck : null));
  await sleep(250);
  assert.deepEqual(fired, [], 'progress and idleness are not stalls');
  stuckWatched = true;
  await sleep(300);
  assert.deepEqual(fired, ['stuck for 80 ms (x-stall-timeout)']);
  stuck++;
  await sleep(200);
  assert.equal(fired.length, 1, 'it fired once and stopped');
  dog.stop();
});

test('a watchdog needs a positive integer timeout', () => {
  assert.throws(() => new StallWatchdog(0, () => undefined), /must be a positive integer/);
  assert.throws(() => new StallWatchdog(1.5, () => undefined), /must be a positive integer/);
});
