export * from './config.ts';
export * from './vm.ts';
