/**
 * The multifd wire format (qemu-migration.md §4.3): the 64-byte handshake, RAM packets and
 * device-state packets byte for byte, and every refusal of the receiver with its message.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  MULTIFD_DEVICE_STATE_MAX,
  MultifdRamPacket,
  encodeDeviceStateHeader,
  encodeMultifdInit,
  formatUuid,
  parseDeviceStateHeader,
  parseMultifdInit,
  parsePacketHeader,
} from '../../../src/migration/multifd/wire.ts';
import {
  MULTIFD_FLAG_DEVICE_STATE,
  MULTIFD_FLAG_SYNC,
  MULTIFD_FLAG_ZLIB,
  multifdRamPacketLen,
} from '../../../src/migration/stream/multifd-constants.ts';

const UUID = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const PAGE = 4096;

test('MultiFDInit_t: magic, version, UUID, channel id, 64 bytes, and its checks', () => {
  const b = encodeMultifdInit(UUID, 3);
  assert.equal(b.length, 64);
  assert.equal(b.toString('hex', 0, 8), '1122334400000001');
  assert.deepEqual(b.subarray(8, 24), UUID);
  assert.equal(b[24], 3);
  assert.ok(
    b.subarray(25).every((x) => x === 0),
    'reserved bytes are zero',
  );
  assert.equal(parseMultifdInit(b, UUID, 4), 3);

  const bad = (mutate: (x: Buffer) => void, channels: number, re: RegExp) => {
    const x = Buffer.from(b);
    mutate(x);
    assert.throws(() => parseMultifdInit(x, UUID, channels), re);
  };
  bad((x) => x.writeUInt32BE(0x5145564d, 0), 4, /received packet magic 5145564d expected 11223344/);
  bad((x) => x.writeUInt32BE(2, 4), 4, /received packet version 2 expected 1/);
  bad(
    (x) => (x[8] = 0xff),
    4,
    /received uuid 'ff112233-4455-6677-8899-aabbccddeeff' and expected uuid '00112233-4455-6677-8899-aabbccddeeff' for channel 3/,
  );
  bad(() => undefined, 3, /channel id 3 is greater than the last channel 2/);
  assert.equal(formatUuid(Buffer.alloc(16)), '00000000-0000-0000-0000-000000000000');
  assert.throws(() => encodeMultifdInit(UUID, 255), /not in 0\.\.254/);
});

test('a RAM packet: QEMU’s field offsets, normal offsets then zero offsets, 1344 bytes for 4 KiB pages', () => {
  const p = new MultifdRamPacket(PAGE);
  assert.equal(p.pageCount, 128);
  assert.equal(p.packetLen, 1344);
  assert.equal(multifdRamPacketLen(PAGE), 1344);
  p.block = 'pc.ram';
  p.normal[0] = 0x1000;
  p.normal[1] = 0x2000;
  p.normalCount = 2;
  p.zero[0] = 0x200000000; // above 4 GiB: both halves of the u64
  p.zeroCount = 1;
  const b = p.encode(7);
  assert.equal(b.readUInt32BE(0), 0x11223344);
  assert.equal(b.readUInt32BE(4), 1);
  assert.equal(b.readUInt32BE(8), 0, 'NOCOMP, no SYNC');
  assert.equal(b.readUInt32BE(12), 128, 'pages_alloc');
  assert.equal(b.readUInt32BE(16), 2, 'normal_pages');
  assert.equal(b.readUInt32BE(20), 2 * PAGE, 'next_packet_size');
  assert.equal(b.readBigUInt64BE(24), 7n, 'packet_num');
  assert.equal(b.readUInt32BE(32), 1, 'zero_pages');
  assert.ok(
    b.subarray(36, 64).every((x) => x === 0),
    'reserved',
  );
  assert.equal(b.toString('latin1', 64, 70), 'pc.ram');
  assert.equal(b[70], 0, 'NUL-terminated');
  assert.equal(b.readBigUInt64BE(320), 0x1000n);
  assert.equal(b.readBigUInt64BE(328), 0x2000n);
  assert.equal(b.readBigUInt64BE(336), 0x200000000n);
  assert.ok(b.subarray(344).every((x) => x === 0));

  const sync = new MultifdRamPacket(PAGE);
  sync.flags = MULTIFD_FLAG_SYNC;
  const s = sync.encode(9);
  assert.equal(s.readUInt32BE(8), MULTIFD_FLAG_SYNC);
  assert.equal(s.readUInt32BE(12), 0, 'a SYNC packet has pages_alloc 0');
  assert.equal(s.readBigUInt64BE(24), 9n);
  assert.ok(s.subarray(32).every((x) => x === 0));
});

test('RAM packets round-trip: any block, any pages', () => {
  fc.assert(
    fc.property(
      fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes('\0')),
      fc.uniqueArray(fc.integer({ min: 0, max: 1 << 20 }), { maxLength: 128 }),
      fc.nat(128),
      fc.nat(2 ** 40),
      (block, pages, split, num) => {
        const name = Buffer.from(block, 'utf8').toString('latin1').slice(0, 200);
        const out = new MultifdRamPacket(PAGE);
        out.block = name;
        const k = Math.min(split, pages.length);
        pages.slice(0, k).forEach((pg) => (out.normal[out.normalCount++] = pg * PAGE));
        pages.slice(k).forEach((pg) => (out.zero[out.zeroCount++] = pg * PAGE));
        const bytes = out.encode(num);
        const back = new MultifdRamPacket(PAGE);
        back.bytes.set(bytes);
        back.decode();
        assert.equal(back.packetNum, num);
        assert.equal(back.normalCount, k);
        assert.equal(back.zeroCount, pages.length - k);
        assert.equal(back.block, pages.length === 0 ? '' : name);
        assert.deepEqual([...back.normal.subarray(0, k)], [...out.normal.subarray(0, k)]);
        assert.deepEqual(
          [...back.zero.subarray(0, back.zeroCount)],
          [...out.zero.subarray(0, out.zeroCount)],
        );
        back.checkIn(((1 << 20) + 1) * PAGE);
      },
    ),
  );
});

test('a RAM packet the receiver refuses, with QEMU’s messages', () => {
  const make = (edit: (b: Buffer) => void): MultifdRamPacket => {
    const out = new MultifdRamPacket(PAGE);
    out.block = 'ram';
    out.normal[out.normalCount++] = 0;
    out.zero[out.zeroCount++] = PAGE;
    const r = new MultifdRamPacket(PAGE);
    r.bytes.set(out.encode(1));
    edit(r.bytes);
    return r;
  };
  const refuses = (edit: (b: Buffer) => void, re: RegExp) =>
    assert.throws(() => make(edit).decode(), re);
  refuses((b) => b.writeUInt32BE(129, 12), /received packet with 129 pages, expected 128/);
  refuses(
    (b) => b.writeUInt32BE(129, 16),
    /received packet with 129 non-zero pages, which exceeds maximum expected pages 128/,
  );
  refuses(
    (b) => b.writeUInt32BE(128, 32),
    /received packet with 128 zero pages, expected maximum 127/,
  );
  refuses((b) => b.writeUInt32BE(MULTIFD_FLAG_ZLIB, 8), /flags received 2 flags expected 0/);
  refuses((b) => b.writeUInt32BE(100, 20), /announcing 100 bytes of page data, expected 4096/);
  refuses((b) => b.writeUInt32BE(0x00200000, 320), /page offset 0x200000xxxxxxxx is too large/);

  const far = make((b) => b.writeUInt32BE(16 * PAGE, 324));
  far.decode();
  assert.throws(
    () => far.checkIn(16 * PAGE),
    /offset too long 65536 \(max 10000\) in RAM block 'ram'/,
  );
  const odd = make((b) => b.writeUInt32BE(12, 324));
  odd.decode();
  assert.throws(() => odd.checkIn(16 * PAGE), /offset 0xc in RAM block 'ram' is not page aligned/);
});

test('packet headers: magic and version checked, with QEMU’s messages', () => {
  const h = Buffer.from('112233440000000100000040', 'hex');
  assert.equal(parsePacketHeader(h), MULTIFD_FLAG_DEVICE_STATE);
  assert.throws(
    () => parsePacketHeader(Buffer.from('5145564d0000000100000000', 'hex')),
    /received packet magic 5145564d, expected 11223344/,
  );
  assert.throws(
    () => parsePacketHeader(Buffer.from('112233440000000200000000', 'hex')),
    /received packet version 2, expected 1/,
  );
});

test('a device-state packet header: 276 bytes, and what the receiver refuses before allocating', () => {
  const h = encodeDeviceStateHeader('0000:00:05.0/vfio', 1, 12 + 4096);
  assert.equal(h.length, 276);
  assert.equal(h.toString('hex', 0, 12), '112233440000000100000040');
  assert.equal(h.toString('latin1', 12, 29), '0000:00:05.0/vfio');
  assert.equal(h.readUInt32BE(268), 1);
  assert.equal(h.readUInt32BE(272), 4108);
  assert.deepEqual(parseDeviceStateHeader(h, MULTIFD_FLAG_DEVICE_STATE), {
    idstr: '0000:00:05.0/vfio',
    instanceId: 1,
    size: 4108,
  });
  assert.throws(
    () => parseDeviceStateHeader(h, MULTIFD_FLAG_DEVICE_STATE | MULTIFD_FLAG_SYNC),
    /received SYNC device state packet/,
  );
  const unterminated = Buffer.from(h);
  unterminated.fill(0x41, 12, 268);
  assert.throws(
    () => parseDeviceStateHeader(unterminated, MULTIFD_FLAG_DEVICE_STATE),
    /unterminated multifd device state idstr/,
  );
  const empty = Buffer.from(h);
  empty.writeUInt32BE(0, 272);
  assert.throws(
    () => parseDeviceStateHeader(empty, MULTIFD_FLAG_DEVICE_STATE),
    /received empty device state packet/,
  );
  const huge = Buffer.from(h);
  huge.writeUInt32BE(MULTIFD_DEVICE_STATE_MAX + 1, 272);
  assert.throws(
    () => parseDeviceStateHeader(huge, MULTIFD_FLAG_DEVICE_STATE),
    /exceeds the limit of 16777216/,
  );
});
