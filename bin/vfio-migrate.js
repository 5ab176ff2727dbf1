#!/usr/bin/env node
// Entry point of the built package; `./vfio-migrate` in the repository builds first.
import { main } from '../dist/src/cli/main.js';

// `vfio-migrate ... | head` closes the pipe early: that is not an error.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});
process.exitCode = await main(process.argv.slice(2));
