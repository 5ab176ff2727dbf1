import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ALL_STATES,
  LEGAL_FLAG_SETS,
  MigState,
  flagsName,
  getNextState,
  isSavingState,
  isStateSupported,
  isVfioError,
  parseStateName,
  rawNextStep,
  requiredFlags,
  settableStates,
  spinsOnUnfixedKernel,
  stateName,
  walkPath,
} from '../../src/uapi/index.ts';
import { kernelTable } from './kernel-table.ts';

test('state values are the kernel enum', () => {
  for (const [name, value] of Object.entries(kernelTable.state_values)) {
    assert.equal(parseStateName(name), value, name);
  }
});

test('raw next-step table equals vfio_from_fsm_table', () => {
  for (const [cur, row] of Object.entries(kernelTable.vfio_from_fsm_table)) {
    for (const [target, next] of Object.entries(row)) {
      assert.equal(stateName(rawNextStep(parseStateName(cur), parseStateName(target))), next);
    }
  }
});

test('required flags equal state_flags_table', () => {
  for (const [name, flags] of Object.entries(kernelTable.state_flags_table)) {
    // ERROR is recorded as "0xFFFFFFFF (~0U: ...)"
    const value = typeof flags === 'number' ? flags : Number.parseInt(String(flags), 16);
    assert.equal(requiredFlags(parseStateName(name)) >>> 0, value >>> 0, name);
  }
});

test('settable states per flag set equal the derived table', () => {
  for (const flags of LEGAL_FLAG_SETS) {
    const d = kernelTable.derived[flagsName(flags)]!;
    assert.equal(d.flags_value, flags);
    assert.deepEqual(settableStates(flags).map(stateName).sort(), [...d.settable_states].sort());
  }
});

test('ERROR is never supported, so never a legal target', () => {
  for (const flags of LEGAL_FLAG_SETS) {
    assert.equal(isStateSupported(MigState.ERROR, flags), false);
    assert.throws(() => getNextState(MigState.RUNNING, MigState.ERROR, flags), /EINVAL/);
  }
});

test('the blocked arc STOP_COPY -> PRE_COPY* fails with EINVAL and would spin unfixed', () => {
  const all = 7;
  for (const target of [MigState.PRE_COPY, MigState.PRE_COPY_P2P]) {
    assert.throws(
      () => getNextState(MigState.STOP_COPY, target, all),
      (e) => isVfioError(e, 'EINVAL'),
    );
    assert.equal(spinsOnUnfixedKernel(MigState.STOP_COPY, target, all), true);
  }
  // With PRE_COPY but no P2P only STOP_COPY -> PRE_COPY exists, and it is blocked too.
  assert.equal(spinsOnUnfixedKernel(MigState.STOP_COPY, MigState.PRE_COPY, 5), true);
  assert.equal(spinsOnUnfixedKernel(MigState.RUNNING, MigState.STOP_COPY, all), false);
});

test('invalid state numbers are refused', () => {
  for (const bad of [8, 9, 255, -1, 1.5, Number.NaN]) {
    assert.throws(() => getNextState(MigState.RUNNING, bad, 7), /EINVAL/);
    assert.throws(() => getNextState(bad, MigState.RUNNING, 7), /EINVAL/);
  }
});

test('property: every step of a walked path is an arc of the raw table or a skip of it', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...LEGAL_FLAG_SETS),
      fc.constantFrom(...ALL_STATES),
      fc.constantFrom(...ALL_STATES),
      (flags, from, to) => {
        if (!isStateSupported(from, flags)) return;
        let path: MigState[];
        try {
          path = walkPath(from, to, flags);
        } catch (e) {
          assert.ok(isVfioError(e, 'EINVAL'));
          return;
        }
        assert.equal(path[0], from);
        assert.equal(path.at(-1), to);
        for (const s of path) assert.ok(isStateSupported(s, flags));
        // once a path leaves the saving group it only re-enters it as its last state (§4)
        const saving = path.map((s) => isSavingState(s));
        const left = saving.indexOf(false);
        if (left >= 0) assert.ok(!saving.slice(left, -1).includes(true), path.join('>'));
        assert.equal(new Set(path).size, path.length, 'no state visited twice');
      },
    ),
    { numRuns: 500 },
  );
});
