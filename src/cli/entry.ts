/** Process entry of the CLI: `node dist/src/cli/entry.js ARGS` is `vfio-migrate ARGS`. */
import { main } from './main.ts';

// `vfio-migrate ... | head` closes the pipe early: that is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});
process.exitCode = await main(process.argv.slice(2));
