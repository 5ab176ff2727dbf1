/**
 * The combination-transition rules of `vfio_mig_get_next_state()` (vfio-uapi.md §4), kept as
 * the kernel keeps them: a raw next-step table and a supported-state rule, consulted one step
 * at a time. Paths are never precomputed; the table is the contract.
 */
import { fail } from './errno.ts';
import { VFIO_MIGRATION_P2P, VFIO_MIGRATION_PRE_COPY, VFIO_MIGRATION_STOP_COPY } from './flags.ts';
import type { MigrationFlags } from './flags.ts';
import { MigState, isValidStateNumber, stateName } from './state.ts';

const { ERROR, STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P } = MigState;

/**
 * `vfio_from_fsm_table[cur][new]`, indexed by enum value. Rows and columns are in enum order
 * (ERROR, STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P); the spec
 * prints the same entries in another order. ERROR in a non-ERROR row means "blocked".
 */
// prettier-ignore
const NEXT_STEP: readonly (readonly MigState[])[] = [
  /* ERROR        */ [ERROR, ERROR, ERROR, ERROR, ERROR, ERROR, ERROR, ERROR],
  /* STOP         */ [ERROR, STOP, RUNNING_P2P, STOP_COPY, RESUMING, RUNNING_P2P, RUNNING_P2P, RUNNING_P2P],
  /* RUNNING      */ [ERROR, RUNNING_P2P, RUNNING, RUNNING_P2P, RUNNING_P2P, RUNNING_P2P, PRE_COPY, RUNNING_P2P],
  /* STOP_COPY    */ [ERROR, STOP, STOP, STOP_COPY, STOP, STOP, ERROR, ERROR],
  /* RESUMING     */ [ERROR, STOP, STOP, STOP, RESUMING, STOP, STOP, STOP],
  /* RUNNING_P2P  */ [ERROR, STOP, RUNNING, STOP, STOP, RUNNING_P2P, RUNNING, PRE_COPY_P2P],
  /* PRE_COPY     */ [ERROR, RUNNING, RUNNING, PRE_COPY_P2P, RUNNING, RUNNING, PRE_COPY, PRE_COPY_P2P],
  /* PRE_COPY_P2P */ [ERROR, RUNNING_P2P, RUNNING_P2P, STOP_COPY, RUNNING_P2P, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P],
];

/** `vfio_from_fsm_table` entry, exposed for tests that compare it with the kernel's table. */
export function rawNextStep(cur: MigState, target: MigState): MigState {
  return NEXT_STEP[cur]![target]!;
}

/** `state_flags_table`: the flags a state needs. ERROR needs ~0U, so it is never supported. */
// prettier-ignore
const REQUIRED_FLAGS: readonly number[] = [
  /* ERROR        */ 0xffffffff,
  /* STOP         */ VFIO_MIGRATION_STOP_COPY,
  /* RUNNING      */ VFIO_MIGRATION_STOP_COPY,
  /* STOP_COPY    */ VFIO_MIGRATION_STOP_COPY,
  /* RESUMING     */ VFIO_MIGRATION_STOP_COPY,
  /* RUNNING_P2P  */ VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P,
  /* PRE_COPY     */ VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY,
  /* PRE_COPY_P2P */ VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY,
];

export function requiredFlags(s: MigState): number {
  return REQUIRED_FLAGS[s]!;
}

/** §4.2: supported iff every required flag is present. ERROR is never supported. */
export function isStateSupported(s: number, flags: MigrationFlags): s is MigState {
  if (!isValidStateNumber(s)) return false;
  const required = REQUIRED_FLAGS[s]!;
  return (required & flags) >>> 0 === required;
}

/** States a user may request with SET on a device with these flags. */
export function settableStates(flags: MigrationFlags): MigState[] {
  return [STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P].filter((s) =>
    isStateSupported(s, flags),
  );
}

/**
 * One step of `vfio_mig_get_next_state()` with the June-2026 stable fix: a blocked arc
 * (STOP_COPY -> PRE_COPY*) fails with EINVAL instead of spinning. Throws VfioError(EINVAL).
 */
export function getNextState(cur: number, target: number, flags: MigrationFlags): MigState {
  if (!isStateSupported(cur, flags)) {
    fail('EINVAL', `current state ${stateName(cur)} is not a supported state`);
  }
  if (!isStateSupported(target, flags)) {
    fail('EINVAL', `requested state ${stateName(target)} is not supported by this device`);
  }
  let next = rawNextStep(cur, target);
  while (next !== ERROR && !isStateSupported(next, flags)) next = rawNextStep(next, target);
  if (next === ERROR) {
    fail('EINVAL', `no path from ${stateName(cur)} to ${stateName(target)} (blocked arc)`);
  }
  return next;
}

/**
 * True when an unfixed kernel would spin forever for this request: the skip loop of §4.3
 * step 4 reaches ERROR, which is never supported. Only reachable from STOP_COPY to PRE_COPY*.
 */
export function spinsOnUnfixedKernel(
  cur: MigState,
  target: MigState,
  flags: MigrationFlags,
): boolean {
  if (!isStateSupported(cur, flags) || !isStateSupported(target, flags)) return false;
  let next = rawNextStep(cur, target);
  for (let guard = 0; guard < 8 && !isStateSupported(next, flags); guard++) {
    if (next === ERROR) return true;
    next = rawNextStep(next, target);
  }
  return false;
}

/**
 * The whole path a driver walks for SET(target), as [cur, ..., target], computed one
 * `getNextState` call at a time like the driver loop of §4.4. `[cur]` when cur == target
 * (including ERROR -> ERROR). Throws VfioError(EINVAL) exactly where SET would fail.
 */
export function walkPath(cur: MigState, target: number, flags: MigrationFlags): MigState[] {
  const path: MigState[] = [cur];
  let at = cur;
  while (at !== target) {
    at = getNextState(at, target, flags);
    path.push(at);
    if (path.length > 8)
      throw new Error(`state table cycles between ${stateName(cur)} and ${stateName(target)}`);
  }
  return path;
}
