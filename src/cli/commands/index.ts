import type { Command } from 'commander';
import { registerConformance } from './conformance.ts';
import { registerInspect } from './inspect.ts';
import { registerRun } from './run.ts';
import { registerUapi } from './uapi.ts';

/** Every subcommand, in the order `--help` lists them. */
export function registerCommands(program: Command): void {
  registerRun(program);
  registerUapi(program);
  registerConformance(program);
  registerInspect(program);
}
