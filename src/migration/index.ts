/**
 * The device-agnostic migration core: the stream codec, the savevm registry and its save and
 * load loops, the outgoing loop, the incoming side, RAM and globalstate, status, statistics,
 * capabilities and parameters. See vm-migration.ts for how one VM wires it.
 */
export * from './status.ts';
export * from './clock.ts';
export * from './downtime-trace.ts';
export * from './events.ts';
export * from './info.ts';
export * from './migration-stats.ts';
export * from './rate-limit.ts';
export * from './options/index.ts';
export * from './notifiers.ts';
export * from './blockers.ts';
export * from './savevm/handlers.ts';
export * from './savevm/registry.ts';
export * from './savevm/save.ts';
export * from './savevm/load.ts';
export * from './savevm/configuration.ts';
export * from './ram/ram.ts';
export type { RamSaveEnvironment } from './ram/save.ts';
export * from './global-state.ts';
export * from './timer.ts';
export * from './source-return-path.ts';
export * from './migration.ts';
export * from './incoming.ts';
export * from './vm-migration.ts';
