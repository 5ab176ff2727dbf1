import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { test } from 'node:test';
import { RamPrefaulter } from '../../src/guest/index.ts';
import { GuestMemory, MiB } from '../../src/memory/index.ts';

const PAGE = 4096;

async function until(what: string, done: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > end) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('the prefault thread touches a window ahead of the loader and changes no byte', async (t) => {
  const memory = GuestMemory.flat([
    { idstr: 'a', size: 2 * MiB },
    { idstr: 'b', size: 8 * MiB },
  ]);
  const b = memory.block('b')!;
  for (let p = 0; p < b.pages; p += 7) b.writePage(p, randomFillSync(Buffer.alloc(PAGE)));
  const before = memory.digest().sha256;
  const pf = new RamPrefaulter(memory, { minRamBytes: 0, windowBytes: 1 * MiB });
  t.after(() => pf.stop());
  // Not dense yet: no thread.
  pf.ahead(1, 0, false);
  assert.equal(pf.started, false);
  pf.ahead(1, 0, true);
  assert.equal(pf.started, true);
  await until('a first window touched', () => pf.touched >= 256);
  pf.ahead(1, 1000, true);
  await until('the second window touched', () => pf.touched >= 512);
  // Not dense any more: the thread stays where the loader is.
  pf.ahead(1, 1500, false);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(pf.touched, 512);
  pf.stop();
  assert.equal(pf.started, false);
  await pf.exited();
  assert.equal(memory.digest().sha256, before);
  // A later load starts it again.
  pf.ahead(1, 1600, true);
  await until('a window after the restart', () => pf.touched >= 512 + 256);
  pf.stop();
  await pf.exited();
  assert.equal(memory.digest().sha256, before);
});

test('small RAM is never prefaulted', () => {
  const memory = GuestMemory.flat([{ idstr: 'ram', size: 16 * MiB }]);
  const pf = new RamPrefaulter(memory);
  pf.ahead(0, 0, true);
  assert.equal(pf.started, false);
});
