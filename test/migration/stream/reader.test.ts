import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  MemorySink,
  QEMUFileReader,
  QEMUFileWriter,
  StreamError,
} from '../../../src/migration/stream/index.ts';
import { feedInChunks } from './feed.ts';

const BYTES = Buffer.from('0102030405060708090a0b0c0d0e0f10', 'hex');

function readerOf(bytes: Uint8Array, chunk = 1): QEMUFileReader {
  const r = new QEMUFileReader();
  for (let i = 0; i < bytes.length; i += chunk) r.push(bytes.subarray(i, i + chunk));
  r.end();
  return r;
}

test('big-endian getters work across chunk boundaries', async () => {
  for (const chunk of [1, 3, 5, 16]) {
    const r = readerOf(BYTES, chunk);
    assert.equal(await r.getU8(), 0x01);
    assert.equal(await r.getBe16(), 0x0203);
    assert.equal(await r.getBe32(), 0x04050607);
    assert.equal(await r.getBe64(), 0x08090a0b0c0d0e0fn);
    assert.equal(r.offset, 15);
    assert.equal(r.available(), 1);
  }
});

test('getBe64Number reads safe integers and refuses larger values', async () => {
  const r = readerOf(Buffer.from('001fffffffffffff0020000000000000', 'hex'));
  assert.equal(await r.getBe64Number(), Number.MAX_SAFE_INTEGER);
  await assert.rejects(r.getBe64Number('block length'), (e: unknown) => {
    assert.ok(e instanceof StreamError);
    assert.equal(e.offset, 8);
    assert.match(e.message, /^block length at offset 8: value 0x20000000000000 is above/);
    return true;
  });
});

test('getBytes refuses a length over its cap before allocating', async () => {
  const r = readerOf(BYTES);
  await r.getU8();
  await assert.rejects(r.getBytes(0xffffffff, 'vmdesc JSON', 1024), {
    name: 'StreamError',
    message: 'vmdesc JSON at offset 1: length 4294967295 exceeds the limit of 1024',
  });
  assert.equal(r.offset, 1, 'nothing consumed');
  assert.deepEqual(await r.getBytes(3, 'x', 3), Buffer.from([2, 3, 4]));
});

test('end of input mid-item names the offset and the item', async () => {
  const r = readerOf(BYTES.subarray(0, 6), 2);
  await r.getBe32();
  await assert.rejects(r.getBe32('section id'), {
    name: 'StreamError',
    message: 'unexpected end of stream at offset 6 while reading section id',
  });
  const r2 = readerOf(BYTES.subarray(0, 6));
  await assert.rejects(r2.readInto(Buffer.alloc(10), 'ram page'), {
    message: 'unexpected end of stream at offset 6 while reading ram page',
  });
  await assert.rejects(readerOf(BYTES.subarray(0, 3)).skip(4, 'payload'), { offset: 3 });
});

test('a failing source rejects pending and later reads with a StreamError', async () => {
  const r = new QEMUFileReader();
  r.push(BYTES.subarray(0, 2));
  const pending = r.getBe32('header');
  r.fail(new Error('ECONNRESET'));
  await assert.rejects(pending, (e: unknown) => {
    assert.ok(e instanceof StreamError);
    assert.equal(e.message, 'stream failed at offset 2 while reading header: ECONNRESET');
    assert.equal((e.cause as Error).message, 'ECONNRESET');
    return true;
  });
  // Bytes that arrived before the failure stay readable; nothing more comes.
  assert.equal(await r.getU8(), 1);
  await assert.rejects(r.getBe16(), StreamError);
});

test('peeks do not consume; atEnd distinguishes the end from more bytes', async () => {
  const r = new QEMUFileReader();
  r.push(BYTES.subarray(0, 3));
  r.push(BYTES.subarray(3, 8));
  assert.deepEqual(await r.peekBytes(5), BYTES.subarray(0, 5));
  assert.equal(await r.peekU8(), 1);
  assert.equal(r.tryPeekU8(4), 5);
  assert.equal(r.tryPeekU8(8), undefined);
  assert.equal(r.offset, 0);
  assert.equal(await r.atEnd(), false);
  const atEnd = r.skip(8).then(() => r.atEnd());
  setImmediate(() => r.end());
  assert.equal(await atEnd, true);
  await assert.rejects(r.peekBytes(70_000), /exceeds the limit of 65536/);
});

test('try* variants consume nothing when the bytes are not all there', () => {
  const r = new QEMUFileReader();
  r.push(BYTES.subarray(0, 7));
  assert.equal(r.tryBe64(), undefined);
  assert.equal(r.tryBe64Number(), undefined);
  assert.equal(r.tryReadInto(Buffer.alloc(8)), false);
  assert.equal(r.trySkip(8), false);
  assert.equal(r.offset, 0);
  assert.equal(r.tryBe32(), 0x01020304);
  assert.equal(r.tryBe16(), 0x0506);
  assert.equal(r.tryU8(), 7);
  assert.equal(r.tryU8(), undefined);
});

test('the pump stops pulling above the high-water mark and resumes as bytes are consumed', async () => {
  let pulled = 0;
  const chunk = Buffer.alloc(256, 7);
  async function* source(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < 64; i++) {
      pulled++;
      yield chunk;
      await Promise.resolve();
    }
  }
  const r = new QEMUFileReader(source(), { highWaterMark: 1024 });
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.ok(pulled <= 5, `pulled ${pulled} chunks while nothing was read`);
  assert.ok(r.available() <= 1024 + 256);
  // A single read larger than the mark still completes (the pump keeps going for it).
  await r.readInto(Buffer.alloc(8192));
  await r.skip(64 * 256 - 8192);
  assert.equal(pulled, 64);
  assert.equal(await r.atEnd(), true);
});

test('a socket source stays open after close(), for the return path', async () => {
  const sock = new PassThrough();
  const r = new QEMUFileReader(sock);
  sock.write(BYTES);
  assert.equal(await r.getBe32(), 0x01020304);
  r.close();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(sock.destroyed, false);
  await assert.rejects(r.readInto(Buffer.alloc(64)), StreamError);
});

test('overlapping async reads are refused', async () => {
  const r = new QEMUFileReader();
  const first = r.getU8();
  await assert.rejects(r.getU8('second'), /overlapping reads \(second\)/);
  r.push(BYTES);
  assert.equal(await first, 1);
});

type Item =
  | { k: 'u8'; v: number }
  | { k: 'be16'; v: number }
  | { k: 'be32'; v: number }
  | { k: 'be64'; v: bigint }
  | { k: 'bytes'; v: Uint8Array };

const itemArb: fc.Arbitrary<Item> = fc.oneof(
  fc.record({ k: fc.constant('u8' as const), v: fc.integer({ min: 0, max: 0xff }) }),
  fc.record({ k: fc.constant('be16' as const), v: fc.integer({ min: 0, max: 0xffff }) }),
  fc.record({ k: fc.constant('be32' as const), v: fc.integer({ min: 0, max: 0xffffffff }) }),
  fc.record({ k: fc.constant('be64' as const), v: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
  fc.record({ k: fc.constant('bytes' as const), v: fc.uint8Array({ maxLength: 300 }) }),
);

test('property: values written by the writer read back equal under any chunking', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(itemArb, { maxLength: 40 }),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 8 }),
      async (items, sizes) => {
        const sink = new MemorySink();
        const w = new QEMUFileWriter(sink, { chunkSize: 64, poolSize: 2 });
        for (const it of items) {
          if (it.k === 'u8') w.putU8(it.v);
          else if (it.k === 'be16') w.putBe16(it.v);
          else if (it.k === 'be32') w.putBe32(it.v);
          else if (it.k === 'be64') w.putBe64(it.v);
          else w.putBuffer(it.v);
          if (w.needsDrain) await w.ready();
        }
        await w.flush();
        assert.equal(w.bytesWritten, sink.size);
        const r = new QEMUFileReader();
        const feeding = feedInChunks(r, sink.bytes(), sizes);
        for (const it of items) {
          if (it.k === 'u8') assert.equal(await r.getU8(), it.v);
          else if (it.k === 'be16') assert.equal(await r.getBe16(), it.v);
          else if (it.k === 'be32') assert.equal(await r.getBe32(), it.v);
          else if (it.k === 'be64') assert.equal(await r.getBe64(), it.v);
          else assert.deepEqual(await r.getBytes(it.v.length, 'bytes', 300), Buffer.from(it.v));
        }
        await feeding;
        assert.equal(await r.atEnd(), true);
      },
    ),
    { numRuns: 150 },
  );
});

test('a Readable source pauses above the high-water mark, and not while a read waits for more', async () => {
  const src = new PassThrough();
  const r = new QEMUFileReader(src, { highWaterMark: 1024 });
  for (let i = 0; i < 16; i++) src.write(Buffer.alloc(256, i));
  await new Promise((resolve) => setImmediate(resolve));
  assert.ok(src.isPaused(), 'paused above the mark');
  assert.ok(r.available() >= 1024 && r.available() < 4096);
  // More than the mark in one read: the source is resumed until it is all there.
  const peeked = await r.peekBytes(3000);
  assert.equal(peeked[2999], 11);
  await r.skip(4096);
  src.end();
  assert.equal(await r.atEnd(), true);
});
