/**
 * The VFIO migration layer: QEMU's hw/vfio/migration.c for the devices of device/. Start with
 * `attachVfioDevices` (attach.ts); `VFIOMigration` (migration.ts) holds one device's hooks.
 */
export * from './attach.ts';
export * from './blockers.ts';
export * from './config-state.ts';
export * from './container-listener.ts';
export * from './device-state.ts';
export * from './dirty-tracking.ts';
export * from './events.ts';
export * from './id-path.ts';
export * from './migration.ts';
export * from './migration-multifd.ts';
export * from './multifd.ts';
export * from './notifier.ts';
export * from './pci-device.ts';
export * from './pending.ts';
export * from './properties.ts';
export * from './records.ts';
export * from './stats.ts';
export * from './vm-state.ts';
