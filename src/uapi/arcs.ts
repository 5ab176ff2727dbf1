/** What a primitive arc does to the data session (vfio-uapi.md §3, fd_*_arcs of the table). */
import { MigState } from './state.ts';

const { STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P } = MigState;

export type ArcDataEffect =
  /** a new saving session is created and returned to the user */
  | 'opens-saving'
  /** a new resuming session is created and returned to the user */
  | 'opens-resuming'
  /** the open session is terminated (reads/writes then fail with ENODEV) */
  | 'closes'
  /** the open saving session continues (moves inside the saving group) */
  | 'keeps'
  | 'none';

export function arcDataEffect(from: MigState, to: MigState): ArcDataEffect {
  if ((from === RUNNING && to === PRE_COPY) || (from === RUNNING_P2P && to === PRE_COPY_P2P)) {
    return 'opens-saving';
  }
  if (from === STOP && to === STOP_COPY) return 'opens-saving';
  if (from === STOP && to === RESUMING) return 'opens-resuming';
  if (
    (from === PRE_COPY && to === RUNNING) ||
    (from === PRE_COPY_P2P && to === RUNNING_P2P) ||
    (from === STOP_COPY && to === STOP) ||
    (from === RESUMING && to === STOP)
  ) {
    return 'closes';
  }
  if (
    (from === PRE_COPY && to === PRE_COPY_P2P) ||
    (from === PRE_COPY_P2P && to === PRE_COPY) ||
    (from === PRE_COPY_P2P && to === STOP_COPY) ||
    (from === PRE_COPY && to === STOP_COPY)
  ) {
    return 'keeps';
  }
  return 'none';
}

/** A SET returns a data fd exactly when its final arc opens a session (§3). */
export function pathReturnsDataFd(path: readonly MigState[]): boolean {
  if (path.length < 2) return false;
  const effect = arcDataEffect(path[path.length - 2]!, path[path.length - 1]!);
  return effect === 'opens-saving' || effect === 'opens-resuming';
}
