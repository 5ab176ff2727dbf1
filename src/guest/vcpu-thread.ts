/**
 * The body of one vCPU thread: write pages of the shared guest RAM at the configured rate and
 * pattern, log each write in the block's dirty log, and obey the command word
 * (vcpu-protocol.ts). Runs in a worker thread; everything it touches is shared memory.
 */
import { workerData } from 'node:worker_threads';
import { markPageDirty } from '../memory/dirty-log.ts';
import { RamBlock } from '../memory/ram-block.ts';
import { writeDataPage, writeZeroPage, nextStamp } from './page-writer.ts';
import { Prng, vcpuSeed } from './prng.ts';
import { TokenBucket } from './token-bucket.ts';
import { COUNTERS_PER_VCPU, Counter, VcpuOp, type VcpuThreadData, opOf } from './vcpu-protocol.ts';
import { PagePicker, vcpuPageRate } from './workload.ts';

/** Pages written between two rate decisions; the command word is still read after each. */
const BATCH = 256;
/** Burst allowance of the token bucket, in seconds of rate. */
const BURST_SECONDS = 0.01;

const data = workerData as VcpuThreadData;
const { index, workload } = data;
const blocks = data.blocks.map((b) => RamBlock.attach(b));
const starts: number[] = [];
let totalPages = 0;
for (const b of blocks) {
  starts.push(totalPages);
  totalPages += b.pages;
}
const command = new Int32Array(data.command);
const acks = new Int32Array(data.acks);
const faults = new Int32Array(data.faults);
const counters = new BigInt64Array(data.counters);
const prng = new Prng(vcpuSeed(workload.seed, index));
const picker = new PagePicker(workload.pattern, totalPages, index, data.count, prng);
const pageRate = vcpuPageRate(workload, data.count);
const bucket =
  pageRate === Infinity || pageRate === 0
    ? undefined
    : new TokenBucket(pageRate, Math.max(1, pageRate * BURST_SECONDS), performance.now());
const zeroThreshold = workload.zeroShare * 4294967296;
const salt = index + 1;

let pages = 0;
let zeroPages = 0;
let stamp = 0;

function publish(): void {
  const base = index * COUNTERS_PER_VCPU;
  Atomics.store(counters, base + Counter.PAGES, BigInt(pages));
  Atomics.store(counters, base + Counter.ZERO_PAGES, BigInt(zeroPages));
}

/** One guest store: pick a page, change it, then log it (dirty-log.ts says why in that order). */
function writeOnePage(): void {
  const g = picker.next();
  let b = blocks.length - 1;
  while (starts[b]! > g) b--;
  const block = blocks[b]!;
  const page = g - starts[b]!;
  const words = block.segmentWords(page);
  const at = block.wordOffsetInSegment(page);
  if (zeroThreshold !== 0 && prng.nextU32() < zeroThreshold) {
    writeZeroPage(words, at);
    zeroPages++;
  } else {
    stamp = nextStamp(stamp);
    writeDataPage(words, at, stamp, salt, prng);
  }
  markPageDirty(block.dirtyLog.words, page);
  pages++;
}

function park(word: number): void {
  publish();
  Atomics.store(acks, index, word);
  Atomics.notify(acks, index);
  Atomics.wait(command, 0, word);
  bucket?.reset(performance.now());
}

for (;;) {
  const word = Atomics.load(command, 0);
  const op = opOf(word);
  if (op === VcpuOp.EXIT) break;
  if (op === VcpuOp.PAUSE) {
    park(word);
    continue;
  }
  if (Atomics.load(faults, index) !== 0) {
    throw new Error(`vCPU ${index}: injected fault after ${pages} page writes`);
  }
  let n = Math.min(BATCH, workload.pageBudget - pages);
  if (n <= 0 || pageRate === 0) {
    // Idle guest: nothing to do until the next command.
    publish();
    Atomics.wait(command, 0, word);
    continue;
  }
  if (bucket !== undefined) {
    const now = performance.now();
    n = bucket.take(n, now);
    if (n === 0) {
      Atomics.wait(command, 0, word, bucket.msUntil(1, now));
      continue;
    }
  }
  for (let k = 0; k < n; k++) {
    writeOnePage();
    if (Atomics.load(command, 0) !== word) break;
  }
  publish();
}
publish();
