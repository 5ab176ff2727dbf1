/** Every SET outcome for a flag set: the matrix `vfio-migrate uapi paths` prints. */
import { isVfioError } from './errno.ts';
import type { ErrnoName } from './errno.ts';
import { pathReturnsDataFd } from './arcs.ts';
import { settableStates, walkPath } from './fsm.ts';
import type { MigrationFlags } from './flags.ts';
import { ALL_STATES, MigState, stateName } from './state.ts';

export type SetOutcome = { path: string[]; dataFd: boolean } | { errno: ErrnoName };

/** The states a device with `flags` can be in: its settable states, and ERROR. */
export function reachableStates(flags: MigrationFlags): MigState[] {
  return [...settableStates(flags), MigState.ERROR];
}

export function setOutcome(from: MigState, to: MigState, flags: MigrationFlags): SetOutcome {
  try {
    const path = walkPath(from, to, flags);
    return { path: path.map(stateName), dataFd: pathReturnsDataFd(path) };
  } catch (err) {
    if (isVfioError(err)) return { errno: err.code };
    throw err;
  }
}

/** outcome[FROM][TO] for every reachable FROM and all eight TO, in enum order. */
export function pathMatrix(flags: MigrationFlags): Record<string, Record<string, SetOutcome>> {
  const matrix: Record<string, Record<string, SetOutcome>> = {};
  for (const from of reachableStates(flags)) {
    const row: Record<string, SetOutcome> = {};
    for (const to of ALL_STATES) row[stateName(to)] = setOutcome(from, to, flags);
    matrix[stateName(from)] = row;
  }
  return matrix;
}
