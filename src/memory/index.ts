export * from './page.ts';
export * from './bitmap-words.ts';
export * from './dirty-bitmap.ts';
export * from './dirty-log.ts';
export * from './ram-block.ts';
export * from './layout.ts';
export * from './guest-memory.ts';
export * from './dirty-log-listeners.ts';
