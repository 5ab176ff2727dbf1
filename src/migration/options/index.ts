/** Capabilities, parameters and migration-object properties (QEMU's migration/options.c). */
export * from './capabilities.ts';
export * from './parameters.ts';
export * from './properties.ts';
export * from './options.ts';
