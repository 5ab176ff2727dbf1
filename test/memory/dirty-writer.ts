/**
 * Worker for dirty-log.test.ts, a vCPU reduced to its memory traffic: stores a rising stamp in
 * the data word of a random page, then logs the page, until control[0] is set. Counts itself
 * ready in control[1]; posts its number of writes at the end. Does nothing outside a worker
 * (`node --test dist/test/` also runs every .js file under test/).
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { markPageDirty } from '../../src/memory/index.ts';

if (!isMainThread) {
  const { data, log, control, seed } = workerData as {
    data: SharedArrayBuffer;
    log: SharedArrayBuffer;
    control: SharedArrayBuffer;
    seed: number;
  };
  const stamps = new Int32Array(data);
  const words = new Int32Array(log);
  const ctl = new Int32Array(control);
  const pages = stamps.length;
  let x = seed | 1;
  let writes = 0;
  Atomics.add(ctl, 1, 1);
  while (Atomics.load(ctl, 0) === 0) {
    for (let k = 0; k < 64; k++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      const page = (x >>> 0) % pages;
      stamps[page] = ++writes;
      markPageDirty(words, page);
    }
  }
  parentPort!.postMessage(writes);
}
