/**
 * Heap bytes allocated per page by RAM migration, save and load, in this process (no
 * sockets): the heap grows by `a + b × pages`; b is measured as the slope between two sizes,
 * with a garbage collection before each run and no collection during it (a run that saw one
 * is repeated).
 *
 *   npx tsx bench/ram-alloc.ts        node dist/bench/ram-alloc.js
 */
import { randomFillSync } from 'node:crypto';
import { PerformanceObserver } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { GuestMemory, MiB, TARGET_PAGE_SIZE } from '../src/memory/index.ts';
import {
  MigrationEvents,
  MigrationOptions,
  MigrationStats,
  RamHandler,
  realClock,
} from '../src/migration/index.ts';
import { QEMUFileReader, QEMUFileWriter } from '../src/migration/stream/index.ts';
import type { ByteSink } from '../src/migration/stream/index.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let collections = 0;
new PerformanceObserver((list) => (collections += list.getEntries().length)).observe({
  entryTypes: ['gc'],
});

const options = new MigrationOptions();
const env = {
  stats: new MigrationStats(),
  clock: realClock,
  events: new MigrationEvents(options),
  options,
  guestRunning: () => true,
};

/** A sink that keeps nothing, or a copy of everything. */
function sink(keep: Buffer[] | null): ByteSink {
  return {
    write: (chunk) => {
      keep?.push(Buffer.from(chunk));
      return Promise.resolve();
    },
    close: () => Promise.resolve(),
  };
}

function guest(mib: number): GuestMemory {
  const memory = GuestMemory.flat([{ idstr: 'ram', size: mib * MiB }]);
  for (const seg of memory.blocks[0]!.segments) randomFillSync(new Uint8Array(seg));
  return memory;
}

/** Heap growth of `run`, or null when a collection happened during it. */
async function heapGrowth(run: () => Promise<void>): Promise<number | null> {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 20)); // let the observer report it
  collections = 0;
  const before = process.memoryUsage().heapUsed;
  await run();
  const grown = process.memoryUsage().heapUsed - before;
  await new Promise((resolve) => setTimeout(resolve, 20));
  return collections === 0 ? grown : null;
}

/** Save: the whole guest in one END section (saveComplete), into a sink that keeps nothing. */
async function saveGrowth(mib: number): Promise<number | null> {
  const ram = new RamHandler(guest(mib), env);
  // The default pool: staging buffers are reused as the sink releases them, as on a socket.
  const w = new QEMUFileWriter(sink(null));
  await ram.saveSetup(w);
  const grown = await heapGrowth(() => ram.saveComplete(w));
  await ram.saveCleanup();
  return grown;
}

/** Load: the same section, already in the reader's buffer in 64 KiB chunks. */
async function loadGrowth(mib: number): Promise<number | null> {
  const chunks: Buffer[] = [];
  const src = new RamHandler(guest(mib), env);
  const w = new QEMUFileWriter(sink(chunks), { poolSize: 1 << 20 });
  await src.saveSetup(w);
  await src.saveComplete(w);
  await w.flush();
  await src.saveCleanup();
  const dst = new RamHandler(GuestMemory.flat([{ idstr: 'ram', size: mib * MiB }]), env);
  await dst.loadSetup();
  // Chunks of its own, as a socket's: pages may land in runs, rearranged in place.
  const r = new QEMUFileReader(null, {
    highWaterMark: Number.MAX_SAFE_INTEGER,
    privateChunks: true,
  });
  for (const c of chunks)
    for (let at = 0; at < c.length; at += 64 << 10) r.push(c.subarray(at, at + (64 << 10)));
  r.end();
  await dst.loadState(r, 4); // START: the block list
  return heapGrowth(() => dst.loadState(r, 4));
}

async function perPage(measure: (mib: number) => Promise<number | null>): Promise<string> {
  const [small, large] = [4, 16];
  for (let attempt = 0; attempt < 5; attempt++) {
    // Warm up at both sizes, so the optimizing compiler's own allocations are done.
    for (const mib of [small, large, small, large]) await measure(mib);
    const a = await measure(small);
    const b = await measure(large);
    if (a === null || b === null) continue;
    const pages = ((large - small) * MiB) / TARGET_PAGE_SIZE;
    return `${((b - a) / pages).toFixed(1)} bytes/page (heap +${a} B for ${small} MiB, +${b} B for ${large} MiB)`;
  }
  return 'not measured: a garbage collection ran during every attempt';
}

console.log(`RAM migration heap allocation, Node ${process.version}`);
console.log(`save: ${await perPage(saveGrowth)}`);
console.log(`load: ${await perPage(loadGrowth)}`);
