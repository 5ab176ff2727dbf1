/**
 * One conformance check: a named promise about a device, the spec section it comes from, and
 * code that exercises a fresh device through the device interface only, so any backend (a
 * simulator here, another process later) is held to the same contract.
 */
import type { VfioMigrationDevice } from '../device/device.ts';
import { VFIO_MIGRATION_PRE_COPY } from '../uapi/index.ts';
import type { MigrationFlags } from '../uapi/index.ts';

export type DeviceFactory = () => Promise<VfioMigrationDevice>;

export interface CheckContext {
  /** A fresh device in its just-opened state; closed by the runner after the check. */
  device(): Promise<VfioMigrationDevice>;
  /** The flags the first device reported; checks use them to pick states. */
  readonly flags: MigrationFlags;
  /** Seeded randomness, so a failing run can be repeated. */
  random(): number;
}

export interface ConformanceCheck {
  readonly id: string;
  readonly title: string;
  /** Where the rule is written down, e.g. "vfio-uapi.md §6.1". */
  readonly spec: string;
  /** When absent the check applies to every device. Return a reason to skip. */
  skip?(flags: MigrationFlags, loggingSupported: boolean): string | undefined;
  run(ctx: CheckContext): Promise<void>;
}

/** A broken promise: what was expected and what the device did. */
export class CheckFailure extends Error {
  override readonly name = 'CheckFailure';
}

export function expect(cond: boolean, message: string): asserts cond {
  if (!cond) throw new CheckFailure(message);
}

/** `skip` for checks about PRE_COPY. */
export const needsPreCopy = (flags: MigrationFlags): string | undefined =>
  flags & VFIO_MIGRATION_PRE_COPY ? undefined : 'the device has no PRE_COPY state';
