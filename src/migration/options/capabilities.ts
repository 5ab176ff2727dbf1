/**
 * Migration capabilities (QAPI `MigrationCapability`, migration/options.c): every name QEMU
 * lists, in its order, so `query-migrate-capabilities` looks like QEMU's. Only the ones this
 * implementation honours can be switched on; the others stay off and say why.
 */
export const MIGRATION_CAPABILITIES = [
  'xbzrle',
  'rdma-pin-all',
  'auto-converge',
  'zero-blocks',
  'events',
  'postcopy-ram',
  'x-colo',
  'release-ram',
  'return-path',
  'pause-before-switchover',
  'multifd',
  'dirty-bitmaps',
  'postcopy-blocktime',
  'late-block-activate',
  'x-ignore-shared',
  'validate-uuid',
  'background-snapshot',
  'zero-copy-send',
  'postcopy-preempt',
  'switchover-ack',
  'dirty-limit',
  'mapped-ram',
] as const;

export type MigrationCapability = (typeof MIGRATION_CAPABILITIES)[number];

/** What the core implements (qemu-migration.md §5.2); the rest is refused when set on. */
export const IMPLEMENTED_CAPABILITIES: ReadonlySet<MigrationCapability> = new Set([
  'events',
  'return-path',
  'pause-before-switchover',
  'multifd',
  'switchover-ack',
]);

/**
 * Capabilities that can be switched on although nothing here runs them: VFIO's save_prepare
 * must get the chance to refuse a migration that asks for them with QEMU's words
 * (qemu-migration.md §3.4 item 5); `migrate` itself refuses them after that.
 */
export const NOT_RUN_CAPABILITIES: readonly MigrationCapability[] = [
  'postcopy-ram',
  'background-snapshot',
];

/** What `background-snapshot` cannot be combined with (`check_caps_background_snapshot`). */
const BACKGROUND_SNAPSHOT_INCOMPATIBLE: readonly MigrationCapability[] = [
  'postcopy-ram',
  'dirty-bitmaps',
  'postcopy-blocktime',
  'late-block-activate',
  'return-path',
  'multifd',
  'pause-before-switchover',
  'auto-converge',
  'release-ram',
  'rdma-pin-all',
  'xbzrle',
  'x-colo',
  'validate-uuid',
  'zero-copy-send',
];

/** Capabilities the configuration section carries and the destination compares (§1.1). */
export const VALIDATED_CAPABILITIES: readonly MigrationCapability[] = [
  'x-ignore-shared',
  'mapped-ram',
];

export function isMigrationCapability(name: unknown): name is MigrationCapability {
  return typeof name === 'string' && (MIGRATION_CAPABILITIES as readonly string[]).includes(name);
}

/** `MigrationCapabilityStatus`. */
export interface MigrationCapabilityStatus {
  capability: MigrationCapability;
  state: boolean;
}

export type CapabilitySet = Readonly<Record<MigrationCapability, boolean>>;

export function noCapabilities(): Record<MigrationCapability, boolean> {
  return Object.fromEntries(MIGRATION_CAPABILITIES.map((c) => [c, false])) as Record<
    MigrationCapability,
    boolean
  >;
}

/**
 * `migrate_caps_check`: the dependencies between capabilities, with QEMU's messages. Only
 * the rules that can bite with the implemented set are here.
 */
export function capabilitiesProblem(caps: CapabilitySet): string | null {
  if (caps['background-snapshot']) {
    const clash = BACKGROUND_SNAPSHOT_INCOMPATIBLE.find((c) => caps[c]);
    if (clash !== undefined) return `Background-snapshot is not compatible with ${clash}`;
  }
  if (caps['switchover-ack'] && !caps['return-path']) {
    return "Capability 'switchover-ack' requires capability 'return-path'";
  }
  return null;
}
