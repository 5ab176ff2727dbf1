/**
 * Properties of QEMU's "migration" object (`-global migration.NAME=on|off`): stream-format
 * switches that machine types turn off for compatibility with older QEMUs. They must agree on
 * both sides (qemu-migration.md §5.2); a QEMU 7.2 peer, for one, does not know
 * SWITCHOVER_START and needs `send-switchover-start` off.
 */
export interface MigrationProperties {
  /** Write (and on load, require) the configuration section after the header. */
  'send-configuration': boolean;
  /** Write (and on load, check) a footer after every section. */
  'send-section-footer': boolean;
  /** Send MIG_CMD_SWITCHOVER_START at the start of the switchover (QEMU ≥ 10.0 machines). */
  'send-switchover-start': boolean;
  /** Always send "globalstate"; off: only for run states other than running and paused. */
  'store-global-state': boolean;
}

export const DEFAULT_MIGRATION_PROPERTIES: Readonly<MigrationProperties> = {
  'send-configuration': true,
  'send-section-footer': true,
  'send-switchover-start': true,
  'store-global-state': true,
};

export function isMigrationProperty(name: string): name is keyof MigrationProperties {
  return Object.hasOwn(DEFAULT_MIGRATION_PROPERTIES, name);
}
