/**
 * Whether a migration sends this device's state over multifd channels (qemu-migration.md
 * §4.1), decided once per migration at save/load setup from `x-migration-multifd-transfer`.
 *
 * The device-state packet path (§4.2–§4.5: `saveCompletePrecopyThread`, `loadStateBuffer`,
 * the load thread) is not built yet, so multifd transfer counts as unsupported: AUTO resolves
 * to the main channel and ON fails setup, as QEMU does when the configuration cannot support
 * it. The hooks already branch on the resolved mode, so enabling it is local to this file and
 * the multifd hooks.
 */
import type { OnOffAuto } from './properties.ts';

/** The capabilities a setup hook can query (SaveContext / LoadContext). */
export interface CapabilityQuery {
  capability(name: string): boolean;
}

/**
 * `vfio_multifd_transfer_supported`. QEMU: multifd on, no mapped-ram, no compression, and the
 * SWITCHOVER_START command enabled. Here additionally the packet path must exist (see above).
 */
export function multifdTransferSupported(_ctx: CapabilityQuery): boolean {
  return false;
}

/** `vfio_multifd_setup`: the mode for this migration; throws when ON cannot be honoured. */
export function resolveMultifdTransfer(
  setting: OnOffAuto,
  ctx: CapabilityQuery,
  device: string,
): boolean {
  const supported = multifdTransferSupported(ctx);
  if (setting === 'off') return false;
  if (setting === 'auto') return supported;
  if (!supported) {
    throw new Error(
      `${device}: x-migration-multifd-transfer=on, but multifd device state transfer is not supported`,
    );
  }
  return true;
}

/**
 * `vfio_load_config_after_iter`: AUTO means "only where the platform needs it" (ARM, whose
 * interrupt controller must be restored first); our guests are x86.
 */
export function loadConfigAfterIter(setting: OnOffAuto, multifd: boolean): boolean {
  if (!multifd) return false;
  return setting === 'on';
}
