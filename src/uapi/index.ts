export * from './errno.ts';
export * from './state.ts';
export * from './flags.ts';
export * from './fsm.ts';
export * from './arcs.ts';
export * from './dma-logging.ts';
export * from './precopy-info.ts';
export * from './paths.ts';
