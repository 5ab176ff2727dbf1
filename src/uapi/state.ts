/** `enum vfio_device_mig_state` (vfio-uapi.md §1.4). ERROR is 0: a zeroed struct means ERROR. */
export const MigState = {
  ERROR: 0,
  STOP: 1,
  RUNNING: 2,
  STOP_COPY: 3,
  RESUMING: 4,
  RUNNING_P2P: 5,
  PRE_COPY: 6,
  PRE_COPY_P2P: 7,
} as const;

export type MigState = (typeof MigState)[keyof typeof MigState];
export type MigStateName = keyof typeof MigState;

/** `VFIO_DEVICE_STATE_NR`: every value at or above it is invalid. */
export const VFIO_DEVICE_STATE_NR = 8;

/** All eight states in enum order. */
export const ALL_STATES: readonly MigState[] = [0, 1, 2, 3, 4, 5, 6, 7];

const NAMES: readonly MigStateName[] = [
  'ERROR',
  'STOP',
  'RUNNING',
  'STOP_COPY',
  'RESUMING',
  'RUNNING_P2P',
  'PRE_COPY',
  'PRE_COPY_P2P',
];

export function stateName(s: number): string {
  return NAMES[s] ?? `INVALID(${s})`;
}

export function parseStateName(name: string): MigState {
  const key = name.toUpperCase().replaceAll('-', '_');
  const i = NAMES.indexOf(key as MigStateName);
  if (i < 0)
    throw new Error(`unknown device state "${name}" (expected one of ${NAMES.join(', ')})`);
  return i as MigState;
}

export function isValidStateNumber(s: number): s is MigState {
  return Number.isInteger(s) && s >= 0 && s < VFIO_DEVICE_STATE_NR;
}

/** The saving group shares one data session (vfio-uapi.md §2). */
export function isSavingState(s: MigState): boolean {
  return s === MigState.PRE_COPY || s === MigState.PRE_COPY_P2P || s === MigState.STOP_COPY;
}

export function isPreCopyState(s: MigState): boolean {
  return s === MigState.PRE_COPY || s === MigState.PRE_COPY_P2P;
}

/** States in which the device may run (do DMA, change internal state). */
export function isRunningState(s: MigState): boolean {
  return (
    s === MigState.RUNNING ||
    s === MigState.RUNNING_P2P ||
    s === MigState.PRE_COPY ||
    s === MigState.PRE_COPY_P2P
  );
}

/** States in which the device must not initiate peer-to-peer DMA (vfio-uapi.md §2). */
export function isP2PQuiescedState(s: MigState): boolean {
  return s !== MigState.RUNNING && s !== MigState.PRE_COPY;
}
