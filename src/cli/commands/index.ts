import type { Command } from 'commander';
import { registerBench } from './bench.ts';
import { registerConformance } from './conformance.ts';
import { registerDemo } from './demo.ts';
import { registerFaults } from './faults.ts';
import { registerInspect } from './inspect.ts';
import { registerRun } from './run.ts';
import { registerUapi } from './uapi.ts';

/** Every subcommand, in the order `--help` lists them. */
export function registerCommands(program: Command): void {
  registerDemo(program);
  registerRun(program);
  registerUapi(program);
  registerConformance(program);
  registerInspect(program);
  registerBench(program);
  registerFaults(program);
}
