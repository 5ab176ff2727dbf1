/**
 * Devices left running under a stopped guest. QEMU's failure notifier puts every device back
 * in RUNNING even when the guest is paused (qemu-migration.md §3.3), and a device keeps working
 * without its guest — a NIC receives and writes guest memory. A later migration of that still
 * paused guest has no VM stop at its switchover, so the devices would run on until their own
 * save_complete, after RAM's last pass, and their last DMA would be lost. QEMU has this hole;
 * here a migration that starts with the guest stopped first stops the running devices the way
 * a VM stop does: every P2P device quiesced, then every device stopped.
 */
import type { VmRunControl } from '../guest/index.ts';
import { isRunningState } from '../uapi/index.ts';
import type { VFIOMigration } from './migration.ts';
import { vmStatePrepareTarget, vmStateTarget } from './vm-state.ts';

export async function stopDevicesUnderStoppedGuest(
  runControl: VmRunControl,
  migrations: readonly VFIOMigration[],
): Promise<void> {
  if (runControl.isRunning()) return;
  const running = migrations.filter((m) => isRunningState(m.state.current));
  for (const m of running) {
    if (m.p2pSupported) await m.state.setOrReset(vmStatePrepareTarget(m.state.current));
  }
  for (const m of running) {
    await m.state.setOrReset(vmStateTarget(m.state.current, false, runControl.runState));
  }
}
