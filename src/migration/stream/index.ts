/** The migration stream codec: QEMUFile reader/writer, sinks and QEMU's main-channel framing. */
export * from './errors.ts';
export * from './constants.ts';
export * from './vfio-flags.ts';
export * from './multifd-constants.ts';
export * from './reader.ts';
export * from './writer.ts';
export * from './sinks.ts';
export * from './idstr.ts';
export * from './vmstate.ts';
export * from './header.ts';
export * from './section.ts';
export * from './typed-message.ts';
export * from './commands.ts';
export * from './return-path.ts';
export * from './vmdesc.ts';
export * from './vbuffer.ts';
