export * from './options.ts';
export * from './report.ts';
export { runDemo } from './run-demo.ts';
