import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PacketPool } from '../../../src/migration/multifd/packet-pool.ts';

/** Above Node's shared 8 KiB pool, so every buffer has memory of its own. */
const CAP = 16 << 10;

test('a released buffer is lent again; a second release and an oversized packet change nothing', () => {
  const pool = new PacketPool(CAP, 2);
  const a = pool.take(CAP - 24);
  assert.equal(a.bytes.length, CAP - 24);
  a.release();
  a.release();
  assert.equal(pool.free, 1, 'given back once');
  const b = pool.take(10);
  assert.equal(b.bytes.length, 10);
  assert.equal(b.bytes.buffer, a.bytes.buffer, 'the same memory');
  assert.equal(pool.free, 0);
  const big = pool.take(CAP + 1);
  assert.equal(big.bytes.length, CAP + 1);
  big.release();
  assert.equal(pool.free, 0, 'a packet above the capacity is not pooled');
});

test('the pool keeps at most maxFree buffers', () => {
  const pool = new PacketPool(CAP, 2);
  const lent = [pool.take(CAP), pool.take(CAP), pool.take(CAP)];
  assert.equal(new Set(lent.map((l) => l.bytes.buffer)).size, 3, 'three distinct buffers');
  for (const l of lent) l.release();
  assert.equal(pool.free, 2);
});
