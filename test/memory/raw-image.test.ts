import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { GuestMemory, loadRawImage } from '../../src/memory/index.ts';

const PAGE = 4096;

function tempFile(t: { after: (fn: () => void) => void }, bytes: Uint8Array): string {
  const dir = mkdtempSync(join(tmpdir(), 'raw-image-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'image.bin');
  writeFileSync(path, bytes);
  return path;
}

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >>> 12) * 7 + 1) & 0xff;
  return b;
}

test('an image lands byte for byte across segments and adjacent blocks', (t) => {
  // Two blocks mapped back to back, 2-page segments: the image crosses both kinds of seam.
  const memory = GuestMemory.flat(
    [
      { idstr: 'a', size: 6 * PAGE },
      { idstr: 'b', size: 6 * PAGE },
    ],
    { segmentSize: 2 * PAGE },
  );
  const image = pattern(7 * PAGE + 123);
  const at = 3 * PAGE + 5;
  assert.equal(loadRawImage(memory, tempFile(t, image), at), image.length);
  assert.deepEqual(Buffer.from(memory.read(at, image.length)), image);
  // Nothing before or after the image was written.
  assert.ok(memory.read(0, at).every((x) => x === 0));
  const end = at + image.length;
  assert.ok(memory.read(end, 12 * PAGE - end).every((x) => x === 0));
});

test('an image that leaves guest RAM is refused, naming the address', (t) => {
  const memory = GuestMemory.flat([{ idstr: 'ram', size: 4 * PAGE }]);
  const path = tempFile(t, pattern(2 * PAGE));
  assert.throws(() => loadRawImage(memory, path, 3 * PAGE), /0x4000 is not guest RAM/);
  assert.throws(() => loadRawImage(memory, path, -1), /not a natural number/);
  assert.throws(() => loadRawImage(memory, join(path, 'missing'), 0), /loader .*missing/);
});
