#!/usr/bin/env node
// Entry point of the built package; `./vfio-migrate` in the repository builds first.
import '../dist/src/cli/entry.js';
