/**
 * QEMU's RunState (QAPI `RunState`, spelled as on the wire) and the transitions QEMU allows
 * (`runstate_transitions_def` in system/runstate.c, QEMU 9.x/10.x). Setting the current state
 * again is always allowed and changes nothing; any other pair missing from the table is a bug
 * in the caller, on which QEMU aborts and we throw.
 */
export const RunState = {
  DEBUG: 'debug',
  INMIGRATE: 'inmigrate',
  INTERNAL_ERROR: 'internal-error',
  IO_ERROR: 'io-error',
  PAUSED: 'paused',
  POSTMIGRATE: 'postmigrate',
  PRELAUNCH: 'prelaunch',
  FINISH_MIGRATE: 'finish-migrate',
  RESTORE_VM: 'restore-vm',
  RUNNING: 'running',
  SAVE_VM: 'save-vm',
  SHUTDOWN: 'shutdown',
  SUSPENDED: 'suspended',
  WATCHDOG: 'watchdog',
  GUEST_PANICKED: 'guest-panicked',
  COLO: 'colo',
} as const;

export type RunState = (typeof RunState)[keyof typeof RunState];

export const RUN_STATES: readonly RunState[] = Object.values(RunState);

const S = RunState;

/** Allowed `from -> to` transitions, by source state. */
export const RUNSTATE_TRANSITIONS: Readonly<Record<RunState, readonly RunState[]>> = {
  [S.PRELAUNCH]: [S.INMIGRATE, S.SUSPENDED, S.RUNNING, S.FINISH_MIGRATE],
  [S.DEBUG]: [S.RUNNING, S.FINISH_MIGRATE, S.PRELAUNCH, S.SUSPENDED],
  [S.INMIGRATE]: [
    S.INTERNAL_ERROR,
    S.IO_ERROR,
    S.PAUSED,
    S.RUNNING,
    S.SHUTDOWN,
    S.SUSPENDED,
    S.WATCHDOG,
    S.GUEST_PANICKED,
    S.FINISH_MIGRATE,
    S.PRELAUNCH,
    S.POSTMIGRATE,
    S.COLO,
  ],
  [S.INTERNAL_ERROR]: [S.PAUSED, S.FINISH_MIGRATE, S.PRELAUNCH],
  [S.IO_ERROR]: [S.RUNNING, S.FINISH_MIGRATE, S.PRELAUNCH],
  [S.PAUSED]: [S.RUNNING, S.FINISH_MIGRATE, S.POSTMIGRATE, S.PRELAUNCH, S.COLO, S.SUSPENDED],
  [S.POSTMIGRATE]: [S.RUNNING, S.FINISH_MIGRATE, S.PRELAUNCH],
  [S.FINISH_MIGRATE]: [
    S.RUNNING,
    S.PAUSED,
    S.POSTMIGRATE,
    S.PRELAUNCH,
    S.COLO,
    S.INTERNAL_ERROR,
    S.IO_ERROR,
    S.SHUTDOWN,
    S.SUSPENDED,
    S.WATCHDOG,
    S.GUEST_PANICKED,
  ],
  [S.RESTORE_VM]: [S.RUNNING, S.PRELAUNCH, S.SUSPENDED],
  [S.COLO]: [S.RUNNING, S.PRELAUNCH, S.SHUTDOWN],
  [S.RUNNING]: [
    S.DEBUG,
    S.INTERNAL_ERROR,
    S.IO_ERROR,
    S.PAUSED,
    S.FINISH_MIGRATE,
    S.RESTORE_VM,
    S.SAVE_VM,
    S.SHUTDOWN,
    S.WATCHDOG,
    S.GUEST_PANICKED,
    S.COLO,
    S.SUSPENDED,
  ],
  [S.SAVE_VM]: [S.RUNNING, S.SUSPENDED],
  [S.SHUTDOWN]: [S.PAUSED, S.FINISH_MIGRATE, S.PRELAUNCH, S.COLO],
  [S.SUSPENDED]: [
    S.RUNNING,
    S.FINISH_MIGRATE,
    S.PRELAUNCH,
    S.COLO,
    S.PAUSED,
    S.SAVE_VM,
    S.RESTORE_VM,
    S.SHUTDOWN,
  ],
  [S.WATCHDOG]: [S.RUNNING, S.FINISH_MIGRATE, S.PRELAUNCH, S.COLO],
  [S.GUEST_PANICKED]: [S.RUNNING, S.FINISH_MIGRATE, S.PRELAUNCH],
};

export function isRunState(s: unknown): s is RunState {
  return typeof s === 'string' && (RUN_STATES as readonly string[]).includes(s);
}

/** `runstate_valid_transitions[from][to]`, with `from === to` allowed as a no-op. */
export function isValidRunStateTransition(from: RunState, to: RunState): boolean {
  return from === to || RUNSTATE_TRANSITIONS[from].includes(to);
}

/** `runstate_is_live`: the guest executes (or sleeps in S3 and may wake up). */
export function runStateIsLive(state: RunState): boolean {
  return state === S.RUNNING || state === S.SUSPENDED;
}

export class RunStateTransitionError extends Error {
  override readonly name = 'RunStateTransitionError';
  readonly from: RunState;
  readonly to: RunState;

  constructor(from: RunState, to: RunState) {
    super(`invalid runstate transition: '${from}' -> '${to}'`);
    this.from = from;
    this.to = to;
  }
}
