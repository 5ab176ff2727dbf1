import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { RamRecordEncoder } from '../../src/migration/ram/format.ts';
import { putVmdesc, vmdescOf } from '../../src/migration/stream/index.ts';
import { renderText } from '../../src/inspect/index.ts';
import type { InspectReport, InspectedItem } from '../../src/inspect/index.ts';
import { fixture } from '../helpers/repo.ts';
import { StreamBuilder, inspectBytes, vfio } from './streams.ts';

const GPU_ID = '0000:00:05.0/vfio';

/** A small but complete stream: ram with a page, a VFIO device through all its sections. */
async function smallStream(): Promise<{ bytes: Buffer; offsets: number[] }> {
  const ram = new RamRecordEncoder({ ignoreShared: true });
  const b = new StreamBuilder()
    .header({ machineType: 'pc', capabilities: ['x-ignore-shared'] })
    .start(2, 'ram', (w) => {
      ram.putMemSize(w, [{ idstr: 'pc.ram', usedLength: 64 << 10, mrAddr: 0 }]);
      ram.putEos(w);
    })
    .start(3, GPU_ID, vfio.setup)
    .part(2, (w) => {
      ram.putZeroPage(w, 'pc.ram', 0);
      ram.putPage(w, 'pc.ram', 4096, Buffer.alloc(4096, 7));
      ram.putEos(w);
    })
    .part(3, (w) => {
      vfio.data(w, 40);
      vfio.initDataSent(w);
    })
    .end(2, (w) => ram.putEos(w))
    .end(3, (w) => {
      vfio.data(w, 24);
      vfio.endOfState(w);
    })
    .full(3, GPU_ID, (w) => vfio.config(w, 32))
    .eof(vmdescOf(4096, []));
  return { bytes: await b.bytes(), offsets: b.offsets };
}

function completeItems(r: InspectReport): InspectedItem[] {
  return r.items.filter((i) => i.item === 'command' || i.complete);
}

function assertCutAt(r: InspectReport, full: InspectReport, cut: number): void {
  assert.ok(r.error !== null, `a stream cut at ${cut} is refused`);
  assert.equal(r.error.offset, cut, r.error.message);
  assert.match(r.error.message, new RegExp(`unexpected end of stream at offset ${cut} while`));
  const done = completeItems(r);
  assert.deepEqual(done, full.items.slice(0, done.length), 'what came before the cut is intact');
}

test('a stream cut at every offset: an error naming that offset, earlier items intact', async () => {
  const { bytes } = await smallStream();
  const full = await inspectBytes(bytes);
  assert.equal(full.error, null);
  assert.equal(full.totals.bytes.trailing, 0);
  for (let cut = 0; cut < bytes.length; cut++) {
    const r = await inspectBytes(bytes.subarray(0, cut));
    if (cut === full.eof! + 1) {
      // vmdesc is optional: a stream that ends right after EOF is complete.
      assert.equal(r.error, null);
      assert.equal(r.vmdesc, null);
      assert.deepEqual(r.items, full.items);
      continue;
    }
    assertCutAt(r, full, cut);
  }
});

test('the QEMU 7.2 capture cut anywhere: an error naming the offset', async () => {
  const bytes = readFileSync(fixture('qemu-7.2-default.bin'));
  const full = await inspectBytes(bytes);
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: bytes.length - 1 }), async (cut) => {
      const r = await inspectBytes(bytes.subarray(0, cut));
      if (cut === full.eof! + 1) assert.equal(r.error, null);
      else assertCutAt(r, full, cut);
    }),
    { numRuns: 60 },
  );
});

/** The offset of the n-th item put by the builder. */
async function build(put: (b: StreamBuilder) => StreamBuilder): Promise<{
  bytes: Buffer;
  offsets: number[];
}> {
  const b = put(new StreamBuilder().header());
  return { bytes: await b.bytes(), offsets: b.offsets };
}

test('unknown payload format: the exact message, and everything before it', async () => {
  const { bytes, offsets } = await build((b) =>
    b
      .start(3, GPU_ID, vfio.setup)
      .full(9, 'serial', (w) => w.putBe32(0x3f8))
      .eof(),
  );
  const r = await inspectBytes(bytes);
  assert.deepEqual(r.error, {
    message: `cannot decode section 'serial' (id 9) at offset ${offsets[1]}: unknown payload format`,
    offset: offsets[1],
  });
  assert.deepEqual(
    r.items.map((i) => i.item === 'section' && [i.type, i.idstr, i.complete, i.payload?.format]),
    [
      ['START', GPU_ID, true, 'vfio'],
      ['FULL', 'serial', false, undefined],
    ],
  );
  assert.deepEqual(
    r.totals.entries.map((e) => [e.idstr, e.format]),
    [
      [GPU_ID, 'vfio'],
      ['serial', null],
    ],
  );
  const text = renderText(r);
  assert.match(text, /START +3 {2}0000:00:05\.0\/vfio \(instance 0, v1\) +SETUP\n/);
  assert.match(text, /FULL +9 {2}serial \(instance 0, v1\) +not decoded \(cut short\)\n/);
});

test('a known entry at another version is not decoded', async () => {
  const { bytes, offsets } = await build((b) => b.start(2, 'ram', (w) => w.putBe64(0x10), 0, 3));
  const r = await inspectBytes(bytes);
  assert.equal(
    r.error?.message,
    `cannot decode section 'ram' (id 2) at offset ${offsets[0]}: ` +
      'unknown payload format (ram version 3; known: version 4)',
  );
});

test('mapped-ram: the RAM layout is refused by name', async () => {
  const b = new StreamBuilder()
    .header({ machineType: 'pc', capabilities: ['mapped-ram'] })
    .start(2, 'ram', (w) => w.putBe64(0x10));
  const r = await inspectBytes(await b.bytes());
  assert.equal(
    r.error?.message,
    `cannot decode section 'ram' (id 2) at offset ${b.offsets[0]}: ` +
      'the mapped-ram file layout is not supported',
  );
});

/** Offset of the first payload byte of the START/FULL section of GPU_ID at `at`. */
const gpuPayload = (at: number) => at + 1 + 4 + 1 + GPU_ID.length + 4 + 4;

test('corrupt VFIO sub-streams: unknown tag, SETUP without END_OF_STATE, oversized data', async () => {
  {
    const { bytes, offsets } = await build((b) =>
      b.start(3, GPU_ID, (w) => w.putBe64(0xffffffffef100009n)),
    );
    const r = await inspectBytes(bytes);
    const at = gpuPayload(offsets[0]!);
    assert.deepEqual(r.error, {
      message: `section '${GPU_ID}' (id 3): VFIO tag at offset ${at}: unknown tag 0xffffffffef100009`,
      offset: at,
    });
  }
  {
    const { bytes, offsets } = await build((b) =>
      b.start(3, GPU_ID, (w) => {
        vfio.setup(w);
        w.putBe64(0);
      }),
    );
    // The setup tag followed by a data record instead of END_OF_STATE.
    bytes.writeBigUInt64BE(0xffffffffef100004n, gpuPayload(offsets[0]!) + 8);
    const r = await inspectBytes(bytes);
    assert.equal(
      r.error?.message,
      `section '${GPU_ID}' (id 3): VFIO tag at offset ${gpuPayload(offsets[0]!) + 8}: ` +
        'expected END_OF_STATE after DEV_SETUP_STATE, got DEV_DATA_STATE',
    );
  }
  {
    const { bytes, offsets } = await build((b) =>
      b.start(3, GPU_ID, vfio.setup).part(3, (w) => vfio.data(w, 100)),
    );
    const record = offsets[1]! + 5;
    bytes.writeBigUInt64BE(1n << 40n, record + 8);
    const r = await inspectBytes(bytes);
    assert.equal(
      r.error?.message,
      `section '${GPU_ID}' (id 3): unexpected end of stream at offset ${bytes.length} while ` +
        `reading DEV_DATA_STATE data (${2 ** 40} bytes from offset ${record + 16})`,
    );
    assert.equal(r.totals.vfio[0]?.dataRecords, 0, 'a record cut short is not counted');
  }
});

test('framing damage: footer, unbound section id, section type, magic', async () => {
  const { bytes, offsets } = await smallStream();
  const full = await inspectBytes(bytes);
  const ramStart = full.items[0]!;
  const footer = ramStart.offset + ramStart.length - 5;
  const cases: [string, (b: Buffer) => void, RegExp][] = [
    [
      'footer marker',
      (b) => (b[footer] = 0x7f),
      new RegExp(
        `^section footer at offset ${footer}: missing section footer for 'ram' \\(got byte 0x7f\\)$`,
      ),
    ],
    [
      'footer id',
      (b) => b.writeUInt32BE(7, footer + 1),
      new RegExp(
        `^section footer at offset ${footer}: mismatched section id in footer for 'ram': read 7, expected 2$`,
      ),
    ],
    [
      'unbound id',
      (b) => b.writeUInt32BE(9, offsets[2]! + 1),
      new RegExp(
        `^section header at offset ${offsets[2]}: PART section id 9 was not opened by a START or FULL section$`,
      ),
    ],
    [
      'section type',
      (b) => (b[offsets[2]!] = 0x42),
      new RegExp(`^section type at offset ${offsets[2]}: unknown savevm section type 0x42$`),
    ],
    ['magic', (b) => (b[0] = 0), /^file magic at offset 0: 0x0045564d is not QEVM/],
  ];
  for (const [name, damage, message] of cases) {
    const broken = Buffer.from(bytes);
    damage(broken);
    const r = await inspectBytes(broken);
    assert.match(r.error?.message ?? 'no error', message, name);
    assert.deepEqual(
      completeItems(r),
      full.items.slice(0, completeItems(r).length),
      `${name}: earlier items intact`,
    );
  }
});

test('after EOF: trailing bytes are counted, a broken vmdesc is an error', async () => {
  {
    const { bytes } = await build((b) =>
      b
        .start(3, GPU_ID, vfio.setup)
        .eof(vmdescOf(4096, []))
        .raw((w) => w.putBuffer(Buffer.from('xyz'))),
    );
    const r = await inspectBytes(bytes);
    assert.equal(r.error, null);
    assert.equal(r.totals.bytes.trailing, 3);
    assert.equal(r.size, bytes.length);
    assert.match(renderText(r), /\n3 bytes after EOF that are no vmdesc\n/);
  }
  {
    const { bytes, offsets } = await build((b) =>
      b
        .start(3, GPU_ID, vfio.setup)
        .eof()
        .raw((w) => putVmdesc(w, '{"page_size": 4096,')),
    );
    const r = await inspectBytes(bytes);
    assert.equal(r.eof, offsets[1]);
    assert.equal(r.vmdesc, null);
    assert.match(r.error?.message ?? '', new RegExp(`^vmdesc JSON at offset ${offsets[1]! + 1}: `));
  }
});

test('random damage never throws: a report, and an error naming an offset inside the input', async () => {
  const { bytes } = await smallStream();
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 4,
      }),
      fc.nat({ max: bytes.length }),
      async (edits, keep) => {
        const broken = Buffer.from(bytes.subarray(0, keep));
        for (const [at, v] of edits) if (at < broken.length) broken[at] = v;
        const r = await inspectBytes(broken);
        assert.ok(r.size <= broken.length);
        if (r.error !== null) {
          assert.ok(r.error.offset >= 0 && r.error.offset <= broken.length, r.error.message);
          assert.match(r.error.message, /offset \d+/);
        }
        renderText(r);
      },
    ),
    { numRuns: 300 },
  );
});

test('text for input that is no stream, or ends inside the configuration', async () => {
  const garbage = await inspectBytes(Buffer.from('hello world, not a stream'));
  assert.equal(
    renderText(garbage, { name: 'g' }),
    'g: no QEMU migration stream header (4 bytes read)\n',
  );
  const { bytes } = await smallStream();
  const cut = renderText(await inspectBytes(bytes.subarray(0, 12)), { name: 'c' });
  assert.match(cut, /^c: QEMU migration stream version 3, 9 bytes decoded\n\nno sections\n/);
  assert.doesNotMatch(cut, /configuration:/, 'a configuration cut short is not "not sent"');
});
