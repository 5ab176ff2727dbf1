import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { GiB, GuestMemory, MiB, RamBlock, TARGET_PAGE_SIZE } from '../../src/memory/index.ts';

const PAGE = TARGET_PAGE_SIZE;
/** Byte equality whatever the view classes (segment views are Buffers). */
const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0;

test('guest RAM of 6 GiB: 1 GiB segments, pages at every segment edge, RSS stays small', () => {
  const rssBefore = process.memoryUsage().rss;
  const mem = GuestMemory.pc(6 * GiB);
  const ram = mem.block('pc.ram')!;
  assert.equal(ram.segments.length, 6);
  assert.equal(ram.pages, (6 * GiB) / PAGE);
  const page = new Uint8Array(PAGE);
  const edges: number[] = [];
  for (let s = 0; s < 6; s++) edges.push((s * GiB) / PAGE, ((s + 1) * GiB) / PAGE - 1);
  for (const p of edges) {
    page.fill(p % 251 || 1);
    ram.writePage(p, page);
  }
  const out = new Uint8Array(PAGE * 2);
  for (const p of edges) {
    ram.copyPageTo(p, out, PAGE);
    assert.equal(out[PAGE], p % 251 || 1, `page ${p}`);
    assert.equal(out[2 * PAGE - 1], p % 251 || 1);
    assert.equal(ram.isZeroPage(p), false);
  }
  for (let s = 0; s < 6; s++) assert.equal(ram.isZeroPage((s * GiB) / PAGE + 1), true);
  // Bulk I/O across the 4 GiB and 5 GiB segment boundaries.
  const span = new Uint8Array(3 * PAGE).map((_, i) => (i * 7) & 0xff);
  ram.write(4 * GiB - PAGE, span);
  assert.deepEqual(ram.read(4 * GiB - PAGE, 3 * PAGE), span);
  // GPA 4 GiB + x is pc.ram offset 3 GiB + x (ram-above-4g).
  const at = mem.translate(5 * GiB + 8)!;
  assert.equal(at.block, ram);
  assert.equal(at.offset, 4 * GiB + 8);
  const grown = (process.memoryUsage().rss - rssBefore) / MiB;
  assert.ok(grown < 256, `RSS grew by ${grown.toFixed(0)} MiB for 6 GiB of mostly untouched RAM`);
});

test('page access agrees with bulk byte access on small segments (fast-check)', () => {
  // 4-page segments make every fourth page a segment boundary.
  const block = new RamBlock('ram', 37 * PAGE, { segmentSize: 4 * PAGE });
  const shadow = new Uint8Array(block.usedLength);
  const write = fc.record({
    offset: fc.nat(block.usedLength - 1),
    bytes: fc.uint8Array({ minLength: 0, maxLength: 3 * PAGE }),
  });
  fc.assert(
    fc.property(fc.array(write, { maxLength: 12 }), fc.nat(block.pages - 1), (writes, p) => {
      for (const w of writes) {
        const bytes = w.bytes.subarray(0, block.usedLength - w.offset);
        block.write(w.offset, bytes);
        shadow.set(bytes, w.offset);
      }
      const expect = shadow.subarray(p * PAGE, (p + 1) * PAGE);
      assert.ok(sameBytes(block.pageView(p), expect), `pageView(${p})`);
      const out = new Uint8Array(PAGE + 5);
      block.copyPageTo(p, out, 5);
      assert.ok(sameBytes(out.subarray(5), expect), `copyPageTo(${p})`);
      assert.equal(
        block.isZeroPage(p),
        expect.every((b) => b === 0),
      );
      assert.deepEqual(block.read(0, block.usedLength), shadow);
    }),
    { numRuns: 100 },
  );
});

test('writes through a page view, writePage and fill are seen by every accessor', () => {
  const block = new RamBlock('ram', 8 * PAGE, { segmentSize: 2 * PAGE });
  block.pageView(3)[100] = 42;
  assert.equal(block.read(3 * PAGE + 100, 1)[0], 42);
  assert.equal(block.segmentBytes(3)[block.offsetInSegment(3) + 100], 42);
  const src = new Uint8Array(PAGE + 10).fill(9);
  block.writePage(5, src, 10);
  assert.equal(block.segmentWords(5)[block.wordOffsetInSegment(5)], 0x09090909);
  block.writePage(6, Buffer.from(src), 3);
  assert.equal(block.read(7 * PAGE - 1, 1)[0], 9);
  block.fill(PAGE, 6 * PAGE, 0);
  for (let p = 0; p < 8; p++) assert.equal(block.isZeroPage(p), true, `page ${p}`);
  assert.throws(() => block.writePage(1, src, 11), /no whole page at offset 11/);
  assert.throws(() => block.copyPageTo(1, new Uint8Array(PAGE), 1), /no room for a page/);
  assert.throws(() => block.pageView(8), /ram: page 8 outside \[0, 8\)/);
  assert.throws(() => block.read(7 * PAGE, PAGE + 1), /outside the block/);
});

test('isZeroPage looks at every byte', () => {
  const block = new RamBlock('ram', 2 * PAGE);
  for (const i of [0, 3, 7, 8, 9, 2047, 4088, 4095]) {
    block.fill(PAGE, PAGE, 0);
    assert.equal(block.isZeroPage(1), true);
    block.fill(PAGE + i, 1, 0x80);
    assert.equal(block.isZeroPage(1), false, `byte ${i}`);
    assert.equal(block.isZeroPage(0), true);
  }
});

test('digest is SHA-256 of the bytes; attach shares bytes and log', () => {
  const block = new RamBlock('pc.ram', 16 * PAGE, { segmentSize: 4 * PAGE });
  block.write(5 * PAGE - 3, new Uint8Array([1, 2, 3, 4, 5, 6]));
  const bytes = block.read(0, block.usedLength);
  assert.equal(block.digest(), createHash('sha256').update(bytes).digest('hex'));
  const twin = RamBlock.attach(structuredClone(block.shared()));
  assert.equal(twin.digest(), block.digest());
  twin.fill(0, 1, 0xff);
  twin.dirtyLog.mark(3);
  assert.equal(block.read(0, 1)[0], 0xff);
  assert.equal(block.syncDirtyBitmap(), 1);
  assert.equal(block.bitmap.nextDirty(0), 3);
});

test('digest of 1 GiB takes about a second at most', (t) => {
  const block = new RamBlock('pc.ram', GiB);
  for (let p = 0; p < block.pages; p += 97) block.fill(p * PAGE, 8, p & 0xff);
  const t0 = performance.now();
  const d = block.digest();
  const ms = performance.now() - t0;
  assert.match(d, /^[0-9a-f]{64}$/);
  assert.ok(ms < 4000, `digest of 1 GiB took ${ms.toFixed(0)} ms`);
  t.diagnostic(`digest 1 GiB: ${ms.toFixed(0)} ms`);
});

test('bad shapes are refused with what and where', () => {
  assert.throws(() => new RamBlock('', PAGE), /idstr "" must be 1..255 bytes/);
  assert.throws(() => new RamBlock('x'.repeat(256), PAGE), /must be 1..255 bytes/);
  assert.throws(
    () => new RamBlock('ram', PAGE + 1),
    /ram: used length 4097 is not a positive multiple/,
  );
  assert.throws(() => new RamBlock('ram', 0), /used length 0/);
  assert.throws(() => new RamBlock('ram', PAGE, { segmentSize: 3 * PAGE }), /segment size 12288/);
  assert.throws(() => new RamBlock('ram', PAGE, { segmentSize: 2 * GiB }), /segment size/);
  const b = new RamBlock('ram', 4 * PAGE, { segmentSize: 2 * PAGE });
  assert.throws(
    () => RamBlock.attach({ ...b.shared(), segments: b.segments.slice(1) }),
    /1 segments, expected 2/,
  );
  assert.throws(
    () =>
      RamBlock.attach({ ...b.shared(), segments: [b.segments[0]!, new SharedArrayBuffer(PAGE)] }),
    /segment 1 is not a 8192-byte SharedArrayBuffer/,
  );
});
