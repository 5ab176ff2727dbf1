import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  RUNSTATE_TRANSITIONS,
  RUN_STATES,
  RunState,
  RunStateTransitionError,
  isValidRunStateTransition,
} from '../../src/guest/runstate.ts';
import { VmRunControl } from '../../src/guest/run-control.ts';

test('the table has QEMU’s 85 transitions between 16 QAPI states', () => {
  assert.equal(RUN_STATES.length, 16);
  const pairs = Object.entries(RUNSTATE_TRANSITIONS).flatMap(([from, tos]) =>
    tos.map((to) => `${from}->${to}`),
  );
  assert.equal(new Set(pairs).size, pairs.length, 'no duplicates');
  assert.equal(pairs.length, 85);
  for (const to of Object.values(RUNSTATE_TRANSITIONS).flat()) assert.ok(RUN_STATES.includes(to));
});

test('the transitions migration relies on are legal, and some that are not', () => {
  const legal: [RunState, RunState][] = [
    ['prelaunch', 'running'],
    ['running', 'finish-migrate'],
    ['paused', 'finish-migrate'],
    ['finish-migrate', 'postmigrate'],
    ['finish-migrate', 'running'], // failed migration restarts the source
    ['finish-migrate', 'paused'],
    ['postmigrate', 'running'],
    ['prelaunch', 'inmigrate'],
    ['inmigrate', 'running'],
    ['inmigrate', 'paused'],
    ['inmigrate', 'internal-error'],
    ['running', 'paused'],
    ['paused', 'running'],
    ['shutdown', 'paused'],
    ['running', 'running'], // the same state is a no-op
  ];
  for (const [from, to] of legal) assert.ok(isValidRunStateTransition(from, to), `${from}->${to}`);
  const illegal: [RunState, RunState][] = [
    ['running', 'prelaunch'],
    ['running', 'postmigrate'],
    ['running', 'inmigrate'],
    ['postmigrate', 'paused'],
    ['prelaunch', 'paused'],
    ['prelaunch', 'postmigrate'],
    ['paused', 'inmigrate'],
    ['internal-error', 'running'],
    ['shutdown', 'running'],
    ['save-vm', 'paused'],
  ];
  for (const [from, to] of illegal)
    assert.ok(!isValidRunStateTransition(from, to), `${from}->${to}`);
});

test('an illegal transition is an error naming both states, and changes nothing', () => {
  const vm = new VmRunControl();
  assert.deepEqual(vm.queryStatus(), { running: false, status: 'prelaunch' });
  assert.throws(
    () => vm.runstateSet(RunState.POSTMIGRATE),
    (e: unknown) =>
      e instanceof RunStateTransitionError &&
      e.from === 'prelaunch' &&
      e.to === 'postmigrate' &&
      e.message === "invalid runstate transition: 'prelaunch' -> 'postmigrate'",
  );
  assert.equal(vm.runState, 'prelaunch');
  vm.runstateSet(RunState.INMIGRATE);
  vm.runstateSet(RunState.INMIGRATE);
  assert.deepEqual(vm.queryStatus(), { running: false, status: 'inmigrate' });
});
