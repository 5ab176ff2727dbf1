import type { Command } from 'commander';
import { registerUapi } from './uapi.ts';

/** Every subcommand, in the order `--help` lists them. */
export function registerCommands(program: Command): void {
  registerUapi(program);
}
