/** `VFIO_MIG_GET_PRECOPY_INFO` (vfio-uapi.md §6.2). */
import { fail } from './errno.ts';
import { isPreCopyState, stateName } from './state.ts';
import type { MigState } from './state.ts';

/** `sizeof(struct vfio_precopy_info)`. */
export const VFIO_PRECOPY_INFO_SIZE = 24;
/** Output flag, only after opting into MIG_PRECOPY_INFOv2 (§6.4). */
export const VFIO_PRECOPY_INFO_REINIT = 1;

export interface PrecopyInfo {
  argsz: number;
  /** v1 echoes the caller's flags; v2 drivers zero them and may set REINIT. */
  flags: number;
  /** Unread "initial" pre-copy bytes; never rises (unless REINIT). */
  initialBytes: number;
  /** State changed relative to what was read; rises with device activity. */
  dirtyBytes: number;
}

/**
 * The checks every driver runs before answering, in the reference drivers' order: argsz,
 * then device state (so a stale fd of an ended session sees EINVAL while the device left
 * PRE_COPY*), then the session itself (ENODEV when disabled).
 */
export function checkPrecopyInfoCall(argsz: number, state: MigState, sessionLive: boolean): void {
  if (argsz < VFIO_PRECOPY_INFO_SIZE) {
    fail('EINVAL', `PRECOPY_INFO: argsz ${argsz} < ${VFIO_PRECOPY_INFO_SIZE}`);
  }
  if (!isPreCopyState(state)) {
    fail('EINVAL', `PRECOPY_INFO: device is in ${stateName(state)}, not PRE_COPY or PRE_COPY_P2P`);
  }
  if (!sessionLive) fail('ENODEV', 'PRECOPY_INFO: the data session has ended');
}
