/**
 * One VM's migration options: capabilities, parameters and migration-object properties.
 * QEMU keeps them process-wide, so the outgoing and the incoming side of a VM share one
 * instance. Changes go through QEMU's checks (migrate_caps_check, migrate_params_check) and
 * are refused while a migration runs, by the guards the migration sides register.
 */
import {
  IMPLEMENTED_CAPABILITIES,
  MIGRATION_CAPABILITIES,
  NOT_RUN_CAPABILITIES,
  capabilitiesProblem,
  isMigrationCapability,
  noCapabilities,
} from './capabilities.ts';
import type {
  CapabilitySet,
  MigrationCapability,
  MigrationCapabilityStatus,
} from './capabilities.ts';
import { DEFAULT_MIGRATION_PARAMETERS, applyParameters } from './parameters.ts';
import type { MigrationParameters } from './parameters.ts';
import { DEFAULT_MIGRATION_PROPERTIES } from './properties.ts';
import type { MigrationProperties } from './properties.ts';

/** Returns why options cannot change now (QEMU's message), or null. */
export type OptionsGuard = () => string | null;

/** Returns why capabilities cannot become `next` now (QEMU's message), or null. */
export type CapabilityGuard = (next: CapabilitySet, current: CapabilitySet) => string | null;

export type ParametersListener = (params: Readonly<MigrationParameters>) => void;

export interface MigrationOptionsInit {
  properties?: Partial<MigrationProperties>;
  parameters?: Readonly<Record<string, unknown>>;
  capabilities?: readonly MigrationCapabilityStatus[];
}

/** Adds `item` to `list`; returns the function that removes it again. */
function addRemovable<T>(list: T[], item: T): () => void {
  list.push(item);
  return () => {
    const i = list.indexOf(item);
    if (i >= 0) list.splice(i, 1);
  };
}

export class MigrationOptions {
  readonly properties: Readonly<MigrationProperties>;
  #caps: Record<MigrationCapability, boolean> = noCapabilities();
  #params: MigrationParameters = { ...DEFAULT_MIGRATION_PARAMETERS };
  readonly #guards: OptionsGuard[] = [];
  readonly #capabilityGuards: CapabilityGuard[] = [];
  readonly #listeners: ParametersListener[] = [];

  constructor(init: MigrationOptionsInit = {}) {
    this.properties = { ...DEFAULT_MIGRATION_PROPERTIES, ...init.properties };
    if (init.capabilities !== undefined) this.setCapabilities(init.capabilities);
    if (init.parameters !== undefined) this.setParameters(init.parameters);
  }

  // --- reading ---------------------------------------------------------------------------

  /** `migrate_<cap>()`. */
  capability(name: MigrationCapability): boolean {
    return this.#caps[name];
  }

  get capabilities(): CapabilitySet {
    return this.#caps;
  }

  get parameters(): Readonly<MigrationParameters> {
    return this.#params;
  }

  /** `query-migrate-capabilities`: every capability, in QEMU's order. */
  queryCapabilities(): MigrationCapabilityStatus[] {
    return MIGRATION_CAPABILITIES.map((capability) => ({
      capability,
      state: this.#caps[capability],
    }));
  }

  /** `query-migrate-parameters`. */
  queryParameters(): MigrationParameters {
    return { ...this.#params };
  }

  // --- changing --------------------------------------------------------------------------

  /** Registers a check run before any change; returns the function that removes it. */
  addGuard(guard: OptionsGuard): () => void {
    return addRemovable(this.#guards, guard);
  }

  /** Registers a check of each capability change; returns the function that removes it. */
  addCapabilityGuard(guard: CapabilityGuard): () => void {
    return addRemovable(this.#capabilityGuards, guard);
  }

  /** Called after every committed `migrate-set-parameters` (a running migration applies it). */
  onParametersChanged(listener: ParametersListener): () => void {
    return addRemovable(this.#listeners, listener);
  }

  /** `migrate-set-capabilities`: all or nothing; throws with QEMU's message. */
  setCapabilities(list: readonly MigrationCapabilityStatus[]): void {
    this.#checkGuards();
    const next = { ...this.#caps };
    for (const { capability, state } of list) {
      if (!isMigrationCapability(capability)) {
        throw new Error(`Parameter 'capability' does not accept value '${String(capability)}'`);
      }
      if (
        state &&
        !IMPLEMENTED_CAPABILITIES.has(capability) &&
        !NOT_RUN_CAPABILITIES.includes(capability)
      ) {
        throw new Error(
          `Capability '${capability}' is not supported here ` +
            `(supported: ${[...IMPLEMENTED_CAPABILITIES].join(', ')})`,
        );
      }
      next[capability] = state;
    }
    const problem =
      capabilitiesProblem(next) ??
      this.#capabilityGuards.map((g) => g(next, this.#caps)).find((p) => p !== null) ??
      null;
    if (problem !== null) throw new Error(problem);
    this.#caps = next;
  }

  /** `migrate-set-parameters`: all or nothing; throws with QEMU's message. */
  setParameters(changes: Readonly<Record<string, unknown>>): void {
    const next = applyParameters(this.#params, changes);
    this.#params = next;
    for (const listener of [...this.#listeners]) listener(next);
  }

  #checkGuards(): void {
    for (const guard of this.#guards) {
      const problem = guard();
      if (problem !== null) throw new Error(problem);
    }
  }
}

/**
 * `multifd_device_state_supported`: device state may travel on the multifd channels —
 * multifd on, no mapped-ram, no compression (qemu-migration.md §4.1).
 */
export function multifdDeviceStateSupported(o: MigrationOptions): boolean {
  return (
    o.capability('multifd') &&
    !o.capability('mapped-ram') &&
    o.parameters['multifd-compression'] === 'none'
  );
}
