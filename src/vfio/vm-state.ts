/**
 * The VM-state change handler of a VFIO device (qemu-migration.md §3.2, vfio-uapi.md §10
 * step 4). Registered with the device's depth as priority; the `prepare` pass only for devices
 * with P2P. Because VmRunControl runs every `prepare` before any main callback, every P2P
 * device is quiesced (*_P2P) before any device stops or runs.
 *
 *   prepare:  PRE_COPY -> PRE_COPY_P2P, anything else -> RUNNING_P2P  (both directions)
 *   main:     starting -> RUNNING
 *             stopping -> STOP_COPY if in PRE_COPY* and the VM stops for finish-migrate or
 *                         paused, else STOP
 *
 * Both reset the device when a transition fails (recover state ERROR). QEMU cannot return an
 * error from such a handler and puts it on the migration stream instead; VmRunControl hands
 * our throw back to whoever stopped or started the VM, and the migration core fails the
 * migration with it. The message names the device, the VM transition and the state change.
 */
import { RunState } from '../guest/index.ts';
import type { VmChangeStateEntry, VmRunControl } from '../guest/index.ts';
import { MigState, isPreCopyState } from '../uapi/index.ts';
import { errorMessage } from './error-message.ts';
import type { VFIOMigration } from './migration.ts';

/** The target of the prepare pass. */
export function vmStatePrepareTarget(current: MigState): MigState {
  return current === MigState.PRE_COPY ? MigState.PRE_COPY_P2P : MigState.RUNNING_P2P;
}

/** The target of the main pass. */
export function vmStateTarget(current: MigState, running: boolean, state: RunState): MigState {
  if (running) return MigState.RUNNING;
  const toStopCopy =
    isPreCopyState(current) && (state === RunState.FINISH_MIGRATE || state === RunState.PAUSED);
  return toStopCopy ? MigState.STOP_COPY : MigState.STOP;
}

/** `qdev_add_vm_change_state_handler_full(dev, vfio_vmstate_change, prepare?, vbasedev)`. */
export function addVfioVmStateHandler(
  runControl: VmRunControl,
  m: VFIOMigration,
  priority: number,
): VmChangeStateEntry {
  const change = async (target: MigState, running: boolean, state: RunState): Promise<void> => {
    try {
      await m.state.setOrReset(target);
    } catch (err) {
      const vm = running ? 'VM start' : `VM stop (${state})`;
      throw new Error(`vfio ${m.name}: ${vm}: ${errorMessage(err)}`, { cause: err });
    }
  };
  return runControl.addVmChangeStateHandler({
    name: `vfio ${m.name}`,
    priority,
    ...(m.p2pSupported
      ? {
          prepare: (running: boolean, state: RunState) =>
            change(vmStatePrepareTarget(m.state.current), running, state),
        }
      : {}),
    handler: (running, state) =>
      change(vmStateTarget(m.state.current, running, state), running, state),
  });
}
