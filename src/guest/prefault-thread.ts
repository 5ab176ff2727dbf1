/**
 * The prefault thread: takes the first-touch page faults of guest RAM ahead of an incoming
 * migration's loader, so that the kernel allocates and zeroes pages on this thread while the
 * main thread receives the stream. Touching a page is `Atomics.compareExchange(word, 0, 0)`:
 * one locked write the kernel must back with a page, which changes no byte even when it races
 * with the loader. (`Atomics.add(word, 0)` would not do: V8 loads the word before its locked
 * write, so the page is first mapped to the shared zero page and then copied on write, a
 * second fault whose TLB flush interrupts every CPU running the process.)
 */
import { setPriority } from 'node:os';
import { workerData } from 'node:worker_threads';
import { RamBlock } from '../memory/ram-block.ts';
import { PrefaultWord as W } from './prefault-protocol.ts';
import type { PrefaultThreadData } from './prefault-protocol.ts';

/** Pages touched between two looks at the control block. */
const BATCH = 64;
/**
 * The lowest priority: the thread uses CPU time nothing else wants, and never takes it from the
 * loader or the source (with both busy on a 2-CPU host, a third busy thread slows everything).
 */
const NICE = 19;

// Linux keeps a nice value per thread, so this lowers this thread only (elsewhere it would
// lower the whole process: leave it).
if (process.platform === 'linux') {
  try {
    setPriority(NICE);
  } catch {
    // not allowed here: run at normal priority
  }
}

const data = workerData as PrefaultThreadData;
const blocks = data.blocks.map((b) => RamBlock.attach(b));
const control = new Int32Array(data.control);

let block = -1;
let cursor = 0;
for (;;) {
  const seq = Atomics.load(control, W.SEQ);
  if (Atomics.load(control, W.QUIT) !== 0) break;
  const b = Atomics.load(control, W.BLOCK);
  const from = Atomics.load(control, W.FROM);
  if (b !== block) {
    block = b;
    cursor = from;
  }
  cursor = Math.max(cursor, from);
  const rb = blocks[block];
  const end = rb === undefined ? 0 : Math.min(Atomics.load(control, W.TO), rb.pages);
  if (rb !== undefined && cursor < end) {
    const stop = Math.min(end, cursor + BATCH);
    const n = stop - cursor;
    for (; cursor < stop; cursor++) {
      Atomics.compareExchange(rb.segmentWords(cursor), rb.wordOffsetInSegment(cursor), 0, 0);
    }
    Atomics.add(control, W.TOUCHED, n);
    continue;
  }
  Atomics.wait(control, W.SEQ, seq);
}
