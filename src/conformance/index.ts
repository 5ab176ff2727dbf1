export * from './check.ts';
export * from './runner.ts';
export { ALL_CHECKS } from './checks/index.ts';
