import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { GuestMemory, TARGET_PAGE_SIZE } from '../../../src/memory/index.ts';
import { RamRecordEncoder } from '../../../src/migration/ram/format.ts';
import { RamLoadState } from '../../../src/migration/ram/load.ts';
import { MemorySink, QEMUFileReader, QEMUFileWriter } from '../../../src/migration/stream/index.ts';

const PAGE = TARGET_PAGE_SIZE;
const PAGES = 48;
/** Two blocks of 48 pages in 8-page segments: runs meet segment ends often. */
const BLOCKS = [
  { idstr: 'ram', size: PAGES * PAGE },
  { idstr: 'vga.vram', size: PAGES * PAGE },
];

function sourceMemory(seed: number): GuestMemory {
  const memory = GuestMemory.flat(BLOCKS, { segmentSize: 8 * PAGE });
  for (const b of memory.blocks) {
    for (let p = 0; p < b.pages; p++) {
      // A third of the pages zero, the others random but for a seed-dependent first byte.
      if ((p + seed) % 3 === 0) continue;
      const page = randomFillSync(Buffer.alloc(PAGE));
      page[0] = (seed + p) | 1;
      b.writePage(p, page);
    }
  }
  return memory;
}

type Op =
  | { kind: 'run'; block: number; page: number; count: number }
  | { kind: 'zero'; block: number; page: number }
  | { kind: 'reset' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('run' as const),
      block: fc.nat(1),
      page: fc.nat(PAGES - 1),
      count: fc.integer({ min: 1, max: 12 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('zero' as const),
      block: fc.nat(1),
      page: fc.nat(PAGES - 1),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reset' as const) }) },
);

/** Encodes `ops` with runs (`putPageRun`) or one page at a time (`putPage`), then EOS. */
async function encodeOps(
  memory: GuestMemory,
  ops: readonly Op[],
  runs: boolean,
  chunkSize: number,
): Promise<Buffer> {
  const sink = new MemorySink();
  const w = new QEMUFileWriter(sink, { chunkSize, poolSize: 1 << 20 });
  const enc = new RamRecordEncoder();
  for (const op of ops) {
    if (op.kind === 'reset') {
      enc.resetBlock();
      continue;
    }
    const block = memory.blocks[op.block]!;
    if (op.kind === 'zero') {
      enc.putZeroPage(w, block.idstr, op.page * PAGE);
      continue;
    }
    const count = Math.min(op.count, block.pagesToSegmentEnd(op.page));
    if (runs) {
      let next = op.page;
      enc.putPageRun(w, block.idstr, op.page * PAGE, count, (dst, at, n) => {
        block.copyPagesTo(next, n, dst, at);
        next += n;
      });
    } else {
      const page = Buffer.alloc(PAGE);
      for (let p = op.page; p < op.page + count; p++) {
        block.copyPageTo(p, page);
        enc.putPage(w, block.idstr, p * PAGE, page);
      }
    }
  }
  enc.putEos(w);
  await w.flush();
  return sink.bytes();
}

/** What loading `ops` must leave in a destination that held `before`. */
function expected(source: GuestMemory, ops: readonly Op[], before: GuestMemory): Buffer[] {
  const out = before.blocks.map((b) => Buffer.from(b.read(0, b.usedLength)));
  for (const op of ops) {
    if (op.kind === 'reset') continue;
    const dst = out[op.block]!;
    if (op.kind === 'zero') {
      dst.fill(0, op.page * PAGE, op.page * PAGE + PAGE);
      continue;
    }
    const block = source.blocks[op.block]!;
    const count = Math.min(op.count, block.pagesToSegmentEnd(op.page));
    dst.set(block.read(op.page * PAGE, count * PAGE), op.page * PAGE);
  }
  return out;
}

/** Fresh chunks of the given sizes, each at a random misalignment in its own memory. */
function chunksOf(bytes: Buffer, sizes: readonly number[], shifts: readonly number[]): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, bytes.length - at);
    const shift = shifts[i % shifts.length]!;
    const chunk = Buffer.alloc(n + shift).subarray(shift);
    bytes.copy(chunk, 0, at, at + n);
    chunks.push(chunk);
    at += n;
  }
  return chunks;
}

test('putPageRun writes exactly the records of putPage, one page at a time', async () => {
  const memory = sourceMemory(1);
  await fc.assert(
    fc.asyncProperty(
      fc.array(opArb, { maxLength: 30 }),
      fc.integer({ min: 2 * (PAGE + 8) + 300, max: 40 * PAGE }),
      async (ops, chunkSize) => {
        const one = await encodeOps(memory, ops, false, chunkSize);
        const runs = await encodeOps(memory, ops, true, chunkSize);
        assert.equal(runs.toString('hex'), one.toString('hex'));
      },
    ),
    { numRuns: 120 },
  );
});

test('pages land the same in place (runs) as one by one, pristine or not, under any chunking', async () => {
  const source = sourceMemory(2);
  await fc.assert(
    fc.asyncProperty(
      fc.array(opArb, { maxLength: 30 }),
      fc.array(fc.integer({ min: 1, max: 5 * PAGE }), { minLength: 1, maxLength: 6 }),
      fc.array(fc.nat(7), { minLength: 1, maxLength: 4 }),
      fc.boolean(),
      fc.boolean(),
      async (ops, sizes, shifts, privateChunks, pristine) => {
        const bytes = await encodeOps(source, ops, true, 16 * PAGE);
        const dst = GuestMemory.flat(BLOCKS, { segmentSize: 8 * PAGE });
        // A destination that held something else must see its zero pages zeroed.
        if (!pristine) for (const b of dst.blocks) b.fill(0, b.usedLength, 0xee);
        const want = expected(source, ops, dst);
        const load = new RamLoadState(dst);
        load.setup();
        const r = new QEMUFileReader(null, { privateChunks });
        for (const c of chunksOf(bytes, sizes, shifts)) r.push(c);
        r.end();
        await load.load(r, 4);
        load.cleanup();
        assert.equal(r.available(), 0);
        dst.blocks.forEach((b, i) => {
          assert.ok(Buffer.from(b.read(0, b.usedLength)).equals(want[i]!), `block ${b.idstr}`);
        });
      },
    ),
    { numRuns: 150 },
  );
});

test('a zero page already received in this load is zeroed again, even in a pristine block', async () => {
  const source = sourceMemory(3);
  // Page 1 of "ram" holds data (seed 3: pages 0, 3, 6 ... are zero).
  const ops: Op[] = [
    { kind: 'run', block: 0, page: 1, count: 1 },
    { kind: 'zero', block: 0, page: 1 },
  ];
  const bytes = await encodeOps(source, ops, true, 16 * PAGE);
  const dst = GuestMemory.flat(BLOCKS, { segmentSize: 8 * PAGE });
  assert.equal(dst.blocks[0]!.pristine, true);
  const load = new RamLoadState(dst);
  load.setup();
  const r = new QEMUFileReader(null, { privateChunks: true });
  r.push(Buffer.from(bytes));
  r.end();
  await load.load(r, 4);
  assert.equal(dst.blocks[0]!.isZeroPage(1), true);
});
