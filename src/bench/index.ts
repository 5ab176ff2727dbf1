/** The library behind `vfio-migrate bench`. */
export * from './downtime.ts';
export * from './image.ts';
export * from './multifd-downtime.ts';
export * from './pair.ts';
export * from './proc.ts';
export * from './qemu.ts';
export * from './ram.ts';
export * from './raw-copy.ts';
export * from './report.ts';
export * from './stats.ts';
