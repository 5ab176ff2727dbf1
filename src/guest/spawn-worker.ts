/**
 * Starts a worker thread on one of our modules. From dist/ (plain .js, the normal case) the
 * module is the worker's entry. Under tsx (running the .ts sources) workers do not inherit the
 * loader (toolchain.md §0.4), so a tiny eval'd bootstrap registers tsx inside the worker first
 * and then imports the module (the pattern of toolchain.md §1.3, without a separate file).
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

const TSX_BOOTSTRAP = `
const { workerData } = require('node:worker_threads');
import(workerData.__tsx).then((tsx) => {
  tsx.register();
  return import(workerData.__entry);
});
`;

/**
 * Runs the module `relative` (without extension, e.g. './vcpu-thread') next to the module whose
 * `import.meta.url` is `callerUrl`, with the caller's own extension.
 */
export function spawnSiblingWorker(
  callerUrl: string,
  relative: string,
  workerData: Record<string, unknown>,
  options: Omit<WorkerOptions, 'workerData' | 'eval'> = {},
): Worker {
  const ext = callerUrl.endsWith('.ts') ? '.ts' : '.js';
  const entry = new URL(`${relative}${ext}`, callerUrl);
  if (ext === '.js') return new Worker(entry, { ...options, workerData });
  return new Worker(TSX_BOOTSTRAP, {
    ...options,
    eval: true,
    workerData: { ...workerData, __entry: entry.href, __tsx: import.meta.resolve('tsx/esm/api') },
  });
}
