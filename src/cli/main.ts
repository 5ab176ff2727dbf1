/** `vfio-migrate`: one entry point, one file per subcommand under ./commands. */
import { Command, CommanderError } from 'commander';
import { registerCommands } from './commands/index.ts';
import { readPackageVersion } from './version.ts';

export async function main(argv: readonly string[]): Promise<number> {
  const program = new Command('vfio-migrate')
    .description(
      'Live migration of virtual machines with VFIO devices, as QEMU does it: the Linux VFIO ' +
        'migration uAPI, strict simulated devices, and the tools around them.',
    )
    .version(readPackageVersion(), '-V, --version')
    .showHelpAfterError()
    .exitOverride();
  registerCommands(program);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    process.stderr.write(`vfio-migrate: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
