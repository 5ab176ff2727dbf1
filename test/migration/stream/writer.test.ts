import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect } from 'node:net';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import {
  MemorySink,
  QEMUFileReader,
  QEMUFileWriter,
  writableSink,
} from '../../../src/migration/stream/index.ts';
import type { ByteSink } from '../../../src/migration/stream/index.ts';

/** A sink that holds every chunk until the test releases it, and records buffer identity. */
class ManualSink implements ByteSink {
  readonly held: { chunk: Uint8Array; release: () => void; fail: (e: Error) => void }[] = [];
  readonly buffers = new Set<ArrayBufferLike>();
  readonly data: Buffer[] = [];
  write(chunk: Uint8Array): Promise<void> {
    this.buffers.add(chunk.buffer);
    this.data.push(Buffer.from(chunk));
    return new Promise((release, fail) => this.held.push({ chunk, release, fail }));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
  releaseAll(): void {
    for (const h of this.held.splice(0)) h.release();
  }
}

test('puts are big-endian, staged into chunks, and counted exactly', async () => {
  const sink = new MemorySink();
  const w = new QEMUFileWriter(sink, { chunkSize: 16 });
  w.putU8(0xab);
  w.putBe16(0x0102);
  w.putBe32(0x03040506);
  w.putBe64(0x0708090a0b0c0d0en);
  w.putBe64(2 ** 40 + 5);
  w.putBuffer(Buffer.alloc(40, 0xee));
  assert.equal(w.bytesWritten, 1 + 2 + 4 + 8 + 8 + 40);
  assert.ok(sink.size < w.bytesWritten, 'the tail is still staged');
  await w.flush();
  assert.equal(
    sink.bytes().toString('hex'),
    'ab' + '0102' + '03040506' + '0708090a0b0c0d0e' + '0000010000000005' + 'ee'.repeat(40),
  );
  assert.throws(() => w.putBe64(-1), RangeError);
  assert.throws(() => w.putBe64(2 ** 53), RangeError);
  assert.throws(() => w.putBe32(2 ** 32), RangeError);
});

test('buffers come from a small pool and are reused only after the sink released them', async () => {
  const sink = new ManualSink();
  const w = new QEMUFileWriter(sink, { chunkSize: 4096, poolSize: 2 });
  const page = Buffer.alloc(4096, 1);
  w.putBuffer(page);
  w.putBuffer(page);
  w.putU8(0); // rotates twice: two chunks in flight
  assert.equal(sink.held.length, 2);
  assert.equal(w.needsDrain, true);
  let ready = false;
  const waiting = w.ready().then(() => (ready = true));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(ready, false, 'ready() waits while the pool is in flight');
  sink.held.shift()!.release();
  await waiting;
  for (let i = 0; i < 200; i++) {
    w.putBuffer(page);
    sink.releaseAll();
    if (w.needsDrain) await w.ready();
    await Promise.resolve();
  }
  const flushing = w.flush();
  sink.releaseAll();
  await new Promise((resolve) => setImmediate(resolve));
  sink.releaseAll();
  await flushing;
  assert.ok(sink.buffers.size <= 3, `${sink.buffers.size} distinct buffers for 202 pages`);
  assert.equal(Buffer.concat(sink.data).length, w.bytesWritten);
});

test('a sink failure surfaces from ready() and flush() with the byte count', async () => {
  const sink = new ManualSink();
  const w = new QEMUFileWriter(sink, { chunkSize: 16, poolSize: 1 });
  w.putBuffer(Buffer.alloc(20));
  sink.held[0]!.fail(new Error('EPIPE'));
  await assert.rejects(w.ready(), /write to the migration channel failed \(20 bytes put\): EPIPE/);
  await assert.rejects(w.flush(), /EPIPE/);
  assert.throws(() => w.putBuffer(Buffer.alloc(20)), /EPIPE/);
});

test('a socket sink carries 8 MiB intact with back-pressure', async () => {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = connect({ port, host: '127.0.0.1' });
  await once(client, 'connect');
  const [peer] = await accepted;
  const w = new QEMUFileWriter(writableSink(client));
  const r = new QEMUFileReader(peer);
  const page = Buffer.alloc(4096);
  const reading = (async () => {
    const got = Buffer.alloc(4096);
    for (let i = 0; i < 2048; i++) {
      assert.equal(await r.getBe64Number(), i * 4096);
      await r.readInto(got);
      assert.equal(got[0], i & 0xff);
    }
    return r.offset;
  })();
  for (let i = 0; i < 2048; i++) {
    page.fill(i & 0xff);
    w.putBe64(i * 4096);
    w.putBuffer(page);
    if (w.needsDrain) await w.ready();
  }
  await w.close();
  assert.equal(await reading, w.bytesWritten);
  assert.equal(w.bytesWritten, 2048 * (8 + 4096));
  peer.destroy();
  client.destroy();
  server.close();
});

test('a socket sink fails writes after the peer is gone instead of throwing an event', async () => {
  const server = createServer((s) => s.destroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = connect({ port: (server.address() as { port: number }).port, host: '127.0.0.1' });
  await once(client, 'connect');
  const w = new QEMUFileWriter(writableSink(client), { chunkSize: 1 << 16 });
  await assert.rejects(async () => {
    for (let i = 0; i < 1000; i++) {
      w.putBuffer(Buffer.alloc(1 << 16));
      if (w.needsDrain) await w.ready();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await w.flush();
  }, /write to the migration channel failed/);
  client.destroy();
  server.close();
});
