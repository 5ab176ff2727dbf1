import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  RAM_SAVE_FLAG_CONTINUE,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_ZERO,
  RAM_SECTION_VERSION_ID,
  RamRecordDecoder,
  RamRecordEncoder,
} from '../../../src/migration/ram/format.ts';
import type { RamBlockInfo, RamFormatOptions } from '../../../src/migration/ram/format.ts';
import { QEMUFileReader, StreamError } from '../../../src/migration/stream/index.ts';
import { fixture } from '../../helpers/repo.ts';
import { encode, hex, readerOf } from '../stream/encode.ts';
import { feedInChunks } from '../stream/feed.ts';

const DEFAULT = readFileSync(fixture('qemu-7.2-default.bin'));
const CAPS = readFileSync(fixture('qemu-7.2-ignore-shared-uuid.bin'));
const MIB16 = 16 << 20;

test('flag values and section version are QEMU ram.c', () => {
  assert.deepEqual(
    [
      RAM_SAVE_FLAG_ZERO,
      RAM_SAVE_FLAG_MEM_SIZE,
      RAM_SAVE_FLAG_PAGE,
      RAM_SAVE_FLAG_EOS,
      RAM_SAVE_FLAG_CONTINUE,
      RAM_SAVE_FLAG_MULTIFD_FLUSH,
    ],
    [0x02, 0x04, 0x08, 0x10, 0x20, 0x200],
  );
  assert.equal(RAM_SECTION_VERSION_ID, 4);
});

test('START payload (MEM_SIZE block list, EOS) is byte for byte QEMU 7.2', async () => {
  const blocks = [{ idstr: 'ram', usedLength: MIB16 }];
  const plain = await encode((w) => {
    const e = new RamRecordEncoder();
    e.putMemSize(w, blocks);
    e.putEos(w);
  });
  assert.equal(hex(plain), hex(DEFAULT.subarray(34, 62)));
  const shared = await encode((w) => {
    const e = new RamRecordEncoder({ ignoreShared: true });
    e.putMemSize(w, [{ idstr: 'ram', usedLength: MIB16, mrAddr: 0 }]);
    e.putEos(w);
  });
  const at = CAPS.indexOf(Buffer.from('0000000001000004', 'hex'));
  assert.equal(hex(shared), hex(CAPS.subarray(at, at + shared.length)));

  const d = new RamRecordDecoder({ ignoreShared: true });
  const r = readerOf(shared);
  assert.equal(await d.readRecord(r), RAM_SAVE_FLAG_MEM_SIZE);
  assert.deepEqual(d.blocks, [{ idstr: 'ram', usedLength: MIB16, mrAddr: 0 }]);
  assert.equal(await d.readRecord(r), RAM_SAVE_FLAG_EOS);
});

test('ZERO and PAGE records: block named once, then CONTINUE, as QEMU 7.2 writes them', async () => {
  const bytes = await encode((w) => {
    const e = new RamRecordEncoder();
    e.putZeroPage(w, 'ram', 0);
    e.putZeroPage(w, 'ram', 0x1000);
  });
  // The PART section of the capture starts right after its 5-byte header at offset 67.
  assert.equal(hex(bytes), hex(DEFAULT.subarray(72, 72 + bytes.length)));
  assert.equal(hex(bytes), '0000000000000002037261' + '6d00' + '000000000000102200');
  const page = Buffer.alloc(4096, 0x5a);
  const withPage = await encode((w) => {
    const e = new RamRecordEncoder();
    e.putPage(w, 'pc.ram', 0x100000, page);
    e.putPage(w, 'pc.ram', 0x101000, page);
    e.resetBlock();
    e.putMultifdFlush(w);
    e.putZeroPage(w, 'pc.ram', 0);
  });
  assert.equal(
    hex(withPage.subarray(0, 15)),
    '0000000000100008' + '06' + hex(Buffer.from('pc.ram')),
  );
  assert.equal(hex(withPage.subarray(15 + 4096, 15 + 4096 + 8)), '0000000000101028');
  assert.equal(hex(withPage.subarray(4096 * 2 + 23, 4096 * 2 + 31)), '0000000000000200');
  assert.equal(withPage[4096 * 2 + 31 + 8], 6, 'after resetBlock() the block is named again');
});

test('encoder refuses what QEMU could not load', async () => {
  const e = new RamRecordEncoder();
  await assert.rejects(
    encode((w) => e.putPage(w, 'ram', 0x100, Buffer.alloc(4096))),
    /page-aligned/,
  );
  await assert.rejects(
    encode((w) => e.putPage(w, 'ram', 0, Buffer.alloc(100))),
    /a page is 4096/,
  );
  await assert.rejects(
    encode((w) =>
      new RamRecordEncoder({ ignoreShared: true }).putMemSize(w, [
        { idstr: 'a', usedLength: 4096 },
      ]),
    ),
    /needs its address/,
  );
});

function header(value: bigint): string {
  return value.toString(16).padStart(16, '0');
}

test('decoder refuses bad records with what and where', async () => {
  const cases: [string, RegExp][] = [
    [header(0x1000n | 0x22n) + '00', /RAM_SAVE_FLAG_CONTINUE before any block was named/],
    [header(0x400n), /unknown combination of migration flags: 0x400/],
    [header(0x40n), /XBZRLE pages \(flags 0x40\) are not supported/],
    [header(0x100n), /compressed pages/],
    [header(0x80n), /RDMA hook/],
    [header(0x01n), /obsolete RAM_SAVE_FLAG_FULL/],
    [header(0x0cn), /unknown combination of migration flags: 0xc/],
    ['ffffffff00000008', /ram record header at offset 0: address 0xffffffffxxxxxxxx is too large/],
    [
      header(0x2000n | 4n) + '0161' + header(0x3000n),
      /block 'a' \(0x3000 bytes\) overruns the total 0x2000/,
    ],
    [header(0x2000n | 4n) + '0161' + header(0n), /block 'a' is empty/],
    [
      header(0x2000n | 4n) + '0161' + header(0x1000n) + '0161' + header(0x1000n),
      /block 'a' listed twice/,
    ],
    [
      header(0x1000n | 4n) + '0161' + header(0x1000n) + header(0x2n) + '0162' + '00',
      /unknown RAM block 'b'/,
    ],
    [
      header(0x1000n | 4n) + '0161' + header(0x1000n) + header(0x1002n) + '0161' + '00',
      /page offset 0x1000 is outside RAM block 'a' \(used length 0x1000\)/,
    ],
  ];
  for (const [bytes, err] of cases) {
    const d = new RamRecordDecoder();
    const r = readerOf(bytes);
    await assert.rejects(
      (async () => {
        for (;;) await d.readRecord(r);
      })(),
      (e: unknown) => {
        assert.ok(e instanceof StreamError, String(e));
        assert.match(e.message, err);
        return true;
      },
    );
  }
});

test('postcopy page sizes are read for the blocks the destination names', async () => {
  const bytes = await encode((w) =>
    new RamRecordEncoder({ postcopyPageSize: () => true }).putMemSize(w, [
      { idstr: 'mem', usedLength: 2 << 20, pageSize: 2 << 20 },
      { idstr: 'rom', usedLength: 4096 },
    ]),
  );
  const d = new RamRecordDecoder({ postcopyPageSize: (id) => id === 'mem' });
  assert.equal(await d.readRecord(readerOf(bytes)), RAM_SAVE_FLAG_MEM_SIZE);
  assert.deepEqual(d.blocks, [
    { idstr: 'mem', usedLength: 2 << 20, pageSize: 2 << 20 },
    { idstr: 'rom', usedLength: 4096 },
  ]);
});

type Rec =
  | { k: 'zero'; block: number; page: number }
  | { k: 'page'; block: number; page: number; fill: number }
  | { k: 'eos' }
  | { k: 'flush' };

const BLOCKS: RamBlockInfo[] = [
  { idstr: 'pc.ram', usedLength: 64 << 12 },
  { idstr: '/rom@etc/acpi/tables', usedLength: 4 << 12 },
  { idstr: 'x', usedLength: 1 << 12 },
];

const recArb: fc.Arbitrary<Rec> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ k: fc.constant('zero' as const), block: fc.nat(2), page: fc.nat(63) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('page' as const),
      block: fc.nat(2),
      page: fc.nat(63),
      fill: fc.nat(255),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ k: 'eos' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'flush' as const }) },
);

function pageOf(r: Rec & { block: number; page: number }): number {
  return (r.page % (BLOCKS[r.block]!.usedLength >> 12)) << 12;
}

test('property: record sequences round-trip through the sync and async paths', async () => {
  const opts: RamFormatOptions = {};
  await fc.assert(
    fc.asyncProperty(
      fc.array(recArb, { maxLength: 30 }),
      fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 5 }),
      async (recs, sizes) => {
        const bytes = await encode((w) => {
          const e = new RamRecordEncoder(opts);
          e.putMemSize(w, BLOCKS);
          for (const rec of recs) {
            if (rec.k === 'zero') e.putZeroPage(w, BLOCKS[rec.block]!.idstr, pageOf(rec));
            else if (rec.k === 'page') {
              e.putPage(w, BLOCKS[rec.block]!.idstr, pageOf(rec), Buffer.alloc(4096, rec.fill));
            } else if (rec.k === 'eos') e.putEos(w);
            else e.putMultifdFlush(w);
          }
        });
        const r = new QEMUFileReader();
        const feeding = feedInChunks(r, bytes, sizes);
        const d = new RamRecordDecoder(opts);
        assert.equal(await d.readRecord(r), RAM_SAVE_FLAG_MEM_SIZE);
        assert.deepEqual(d.blocks, BLOCKS);
        const page = Buffer.alloc(4096);
        for (const rec of recs) {
          const kind = d.tryReadRecord(r) ?? (await d.readRecord(r));
          if (rec.k === 'zero' || rec.k === 'page') {
            assert.equal(kind, rec.k === 'zero' ? RAM_SAVE_FLAG_ZERO : RAM_SAVE_FLAG_PAGE);
            assert.equal(d.block, BLOCKS[rec.block]!.idstr);
            assert.equal(d.offset, pageOf(rec));
            if (rec.k === 'zero') assert.equal(d.fill, 0);
            else {
              if (!r.tryReadInto(page)) await r.readInto(page);
              assert.ok(page.every((b) => b === rec.fill));
            }
          } else {
            assert.equal(kind, rec.k === 'eos' ? RAM_SAVE_FLAG_EOS : RAM_SAVE_FLAG_MULTIFD_FLUSH);
          }
        }
        await feeding;
        assert.equal(await r.atEnd(), true);
      },
    ),
    { numRuns: 150 },
  );
});

test('property: garbage records only ever yield a StreamError', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (b) => {
      const d = new RamRecordDecoder();
      const r = readerOf(b);
      try {
        for (;;) {
          const k = await d.readRecord(r);
          if (k === RAM_SAVE_FLAG_PAGE) await r.skip(4096);
        }
      } catch (err) {
        assert.ok(err instanceof StreamError, String(err));
      }
    }),
    { numRuns: 500 },
  );
});
