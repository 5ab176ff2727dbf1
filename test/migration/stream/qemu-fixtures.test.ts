import assert from 'node:assert/strict';
import { createReadStream, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { QEMUFileReader } from '../../../src/migration/stream/index.ts';
import { GUEST_RAM, PAGE, PATTERN_LOADS, patternFile } from '../../helpers/qemu.ts';
import { fixture } from '../../helpers/repo.ts';
import { decodeQemuStream } from './qemu-stream.ts';
import type { DecodedStream } from './qemu-stream.ts';

function decodeFixture(name: string, ignoreShared = false): Promise<DecodedStream> {
  return decodeQemuStream(new QEMUFileReader(createReadStream(fixture(name))), { ignoreShared });
}

/** Guest RAM as QEMU had it: zero, with the pattern files at their load addresses. */
function expectedRam(): Buffer {
  const ram = Buffer.alloc(GUEST_RAM);
  PATTERN_LOADS.forEach((l, i) => patternFile(i).copy(ram, l.addr));
  return ram;
}

function assertCommonShape(d: DecodedStream): void {
  assert.equal(d.config.machineType, 'none');
  assert.equal(d.config.targetPageBits, undefined);
  assert.deepEqual(
    d.sections.map((s) => [s.kind, s.sectionId, s.idstr, s.instanceId, s.versionId]),
    [
      ['START', 2, 'ram', 0, 4],
      ['PART', 2, 'ram', 0, 4],
      ['END', 2, 'ram', 0, 4],
      ['FULL', 0, 'timer', 0, 2],
      ['FULL', 4, 'globalstate', 0, 1],
    ],
  );
  const part = d.sections[1]!;
  assert.equal(part.zeroPages! + part.normalPages!, GUEST_RAM / PAGE);
  assert.equal(part.normalPages, 4);
  assert.ok(d.ram.equals(expectedRam()), 'decoded guest RAM equals the loaded pattern');
  assert.deepEqual(d.sections[3]!.payload, Buffer.alloc(24));
  const gs = d.sections[4]!.payload!;
  assert.equal(gs.readUInt32BE(0), 'prelaunch'.length + 1);
  assert.equal(gs.subarray(4, 4 + 9).toString('latin1'), 'prelaunch');
  assert.ok(gs.subarray(13).every((b) => b === 0));
  assert.equal(d.commands.length, 0);
  assert.equal(d.vmdesc?.page_size, 4096);
  assert.deepEqual(
    d.vmdesc?.devices.map((x) => [x.name, x.instance_id]),
    [
      ['timer', 0],
      ['globalstate', 0],
    ],
  );
  assert.ok(d.vmdescText!.startsWith('{"page_size": 4096, "devices": [{"name": "timer"'));
}

test('pattern fixtures are what patternFile() produces', () => {
  PATTERN_LOADS.forEach((l, i) => assert.ok(readFileSync(fixture(l.file)).equals(patternFile(i))));
});

test('QEMU 7.2 default stream decodes completely', async () => {
  const d = await decodeFixture('qemu-7.2-default.bin');
  assertCommonShape(d);
  assert.equal(d.config.capabilities, undefined);
  assert.equal(d.config.uuid, undefined);
  assert.deepEqual(d.ramBlocks, [{ idstr: 'ram', usedLength: GUEST_RAM }]);
  assert.equal(d.eofOffset, 53533);
});

test('QEMU 7.2 stream with x-ignore-shared and validate-uuid decodes completely', async () => {
  const d = await decodeFixture('qemu-7.2-ignore-shared-uuid.bin', true);
  assertCommonShape(d);
  assert.deepEqual(d.config.capabilities, ['x-ignore-shared']);
  assert.equal(Buffer.from(d.config.uuid!).toString('hex'), '123456789abcdef01122334455667788');
  assert.deepEqual(d.ramBlocks, [{ idstr: 'ram', usedLength: GUEST_RAM, mrAddr: 0 }]);
});

test('QEMU 7.2 stream decodes the same when fed one byte at a time', async () => {
  const bytes = readFileSync(fixture('qemu-7.2-default.bin'));
  const r = new QEMUFileReader();
  const decoding = decodeQemuStream(r);
  for (let i = 0; i < bytes.length; i += 1 + (i % 7)) {
    r.push(bytes.subarray(i, Math.min(bytes.length, i + 1 + (i % 7))));
    if (i % 512 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  r.end();
  const d = await decoding;
  assertCommonShape(d);
});
