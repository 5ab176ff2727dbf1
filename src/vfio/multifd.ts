/**
 * Whether a migration sends this device's state over multifd channels (qemu-migration.md
 * §4.1), and whether the destination loads its config only after the iterables (§4.5),
 * decided once per migration at save/load setup from `x-migration-multifd-transfer` and
 * `x-migration-load-config-after-iter`. The transfer itself is migration-multifd.ts.
 */
import type { MigrationContext } from '../migration/savevm/handlers.ts';
import type { OnOffAuto } from './properties.ts';

/**
 * `vfio_multifd_transfer_supported`: the core can carry device state on its multifd channels
 * (multifd on, no mapped-ram, no compression) and SWITCHOVER_START is sent, which starts the
 * destination's load thread.
 */
export function multifdTransferSupported(ctx: MigrationContext): boolean {
  return ctx.multifdDeviceState() && ctx.sendSwitchoverStart();
}

/** `vfio_multifd_setup`: the mode for this migration; throws when ON cannot be honoured. */
export function resolveMultifdTransfer(
  setting: OnOffAuto,
  ctx: MigrationContext,
  device: string,
): boolean {
  const supported = multifdTransferSupported(ctx);
  if (setting === 'off') return false;
  if (setting === 'auto') return supported;
  if (!supported) {
    throw new Error(
      `${device}: Multifd device transfer requested but unsupported in the current config`,
    );
  }
  return true;
}

/**
 * `vfio_load_config_after_iter`: only with multifd transfer; AUTO means "where the platform
 * needs it": ARM, whose interrupt controller (GIC/ITS) must be restored before a device's
 * config (QEMU commit d329f5032e17).
 */
export function loadConfigAfterIter(
  setting: OnOffAuto,
  multifd: boolean,
  targetArm: boolean,
): boolean {
  if (!multifd) return false;
  if (setting === 'auto') return targetArm;
  return setting === 'on';
}
