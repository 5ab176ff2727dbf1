import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { MemorySink, QEMUFileReader, QEMUFileWriter } from '../../../src/migration/stream/index.ts';

test('reserve and commit lay bytes out in the staging buffer, starting a new one when short', async () => {
  const sink = new MemorySink();
  const w = new QEMUFileWriter(sink, { chunkSize: 32 });
  w.putBe32(0x01020304);
  assert.equal(w.room, 28);
  let at = w.reserve(20);
  assert.equal(at, 4);
  w.stagingBuffer.fill(0xaa, at, at + 20);
  w.commit(20);
  assert.equal(w.bytesWritten, 24);
  // 10 bytes do not fit in the 8 left: the staged 24 go out and a new buffer starts.
  at = w.reserve(10);
  assert.equal(at, 0);
  w.stagingBuffer.fill(0xbb, at, at + 10);
  w.commit(10);
  await w.flush();
  assert.equal(sink.bytes().toString('hex'), '01020304' + 'aa'.repeat(20) + 'bb'.repeat(10));
  assert.throws(() => w.reserve(33), /not in \[0, 32\]/);
  w.reserve(4);
  assert.throws(() => w.commit(40), /overrun the reserved room/);
});

test('the head chunk is readable in place; consumeHead moves on', () => {
  const r = new QEMUFileReader();
  assert.equal(r.headBuffer.length, 0);
  r.push(Buffer.from('0102030405', 'hex'));
  r.push(Buffer.from('0607', 'hex'));
  assert.equal(r.tryU8(), 1);
  assert.equal(r.headBuffer.toString('hex'), '0102030405');
  assert.equal(r.headOffset, 1);
  r.consumeHead(4);
  assert.equal(r.offset, 5);
  assert.equal(r.headBuffer.toString('hex'), '0607');
  assert.equal(r.headOffset, 0);
  assert.throws(() => r.consumeHead(3), /the head chunk has 2/);
  assert.equal(r.headWritable, false);
});

test('chunks are private (writable in place) from sockets and file streams only', async (t) => {
  assert.equal(new QEMUFileReader(new PassThrough()).headWritable, false);
  assert.equal(new QEMUFileReader(null, { privateChunks: true }).headWritable, true);
  const dir = mkdtempSync(join(tmpdir(), 'in-place-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'f'), 'x');
  const file = createReadStream(join(dir, 'f'));
  const fromFile = new QEMUFileReader(file);
  assert.equal(fromFile.headWritable, true);
  assert.equal(await fromFile.getU8(), 0x78);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const client = connect(port, '127.0.0.1');
  const sock = await accepted;
  t.after(() => {
    client.destroy();
    sock.destroy();
    server.close();
  });
  assert.equal(new QEMUFileReader(sock).headWritable, true);
});
