/**
 * `vfio-migrate inspect ...` in a child process, wired as src/cli/main.ts wires a command, for
 * when the command is not (yet) in the registry of src/cli/commands/index.ts. Without
 * arguments it does nothing (`node --test dist/test/` also runs every .js file under test/).
 */
import { Command, CommanderError } from 'commander';
import { registerInspect } from '../../src/cli/commands/inspect.ts';

const args = process.argv.slice(2);
if (args[0] === 'inspect') {
  const program = new Command('vfio-migrate').exitOverride();
  registerInspect(program);
  try {
    await program.parseAsync(args, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode;
    } else {
      process.stderr.write(`vfio-migrate: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    }
  }
}
