import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  MIG_CMD_ENABLE_COLO,
  MIG_CMD_MAX,
  MIG_CMD_OPEN_RETURN_PATH,
  MIG_CMD_PING,
  MIG_CMD_POSTCOPY_ADVISE,
  MIG_CMD_RECV_BITMAP,
  MIG_CMD_SWITCHOVER_START,
  MIG_RP_MSG_MAX,
  MIG_RP_MSG_PONG,
  MIG_RP_MSG_REQ_PAGES,
  MIG_RP_MSG_REQ_PAGES_ID,
  MIG_RP_MSG_SHUT,
  MIG_RP_MSG_SWITCHOVER_ACK,
  MULTIFD_DEVICE_STATE_PACKET_SIZE,
  MULTIFD_FLAG_DEVICE_STATE,
  MULTIFD_MAGIC,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  StreamError,
  VFIO_MIG_FLAG_DEV_CONFIG_LOAD_READY,
  VFIO_MIG_FLAG_DEV_CONFIG_STATE,
  VFIO_MIG_FLAG_DEV_DATA_STATE,
  VFIO_MIG_FLAG_DEV_INIT_DATA_SENT,
  VFIO_MIG_FLAG_DEV_SETUP_STATE,
  VFIO_MIG_FLAG_END_OF_STATE,
  configurationMismatch,
  formatQemuJson,
  messageU32,
  pageRequestOf,
  parseVmdesc,
  putCommand,
  putCommandOpenReturnPath,
  putCommandPackaged,
  putCommandPing,
  putCommandSwitchoverStart,
  putConfiguration,
  putEof,
  putFileHeader,
  putReturnPathMessage,
  putRpPong,
  putRpResumeAck,
  putRpShut,
  putRpSwitchoverAck,
  putSectionFooter,
  putSectionHeader,
  putVmdesc,
  readCommand,
  readConfiguration,
  readFileHeader,
  readReturnPathMessage,
  readSectionFooter,
  readSectionHeader,
  readSectionType,
  readVmdesc,
  vfioMigFlagName,
  vmdescOldStyleDevice,
} from '../../../src/migration/stream/index.ts';
import { fixture } from '../../helpers/repo.ts';
import { encode, hex, readerOf } from './encode.ts';

const DEFAULT = readFileSync(fixture('qemu-7.2-default.bin'));
const CAPS = readFileSync(fixture('qemu-7.2-ignore-shared-uuid.bin'));
const UUID = Buffer.from('123456789abcdef01122334455667788', 'hex');

test('header and configuration are byte for byte what QEMU 7.2 writes', async () => {
  const plain = await encode((w) => {
    putFileHeader(w);
    putConfiguration(w, { machineType: 'none' });
  });
  assert.equal(hex(plain), hex(DEFAULT.subarray(0, 17)));
  const caps = await encode((w) => {
    putFileHeader(w);
    putConfiguration(w, { machineType: 'none', capabilities: ['x-ignore-shared'], uuid: UUID });
  });
  assert.equal(hex(caps), hex(CAPS.subarray(0, caps.length)));
  assert.equal(CAPS[caps.length], QEMU_VM_SECTION_START, 'the ram section follows');
  const r = readerOf(caps);
  await readFileHeader(r);
  const cfg = await readConfiguration(r);
  assert.deepEqual(cfg, { machineType: 'none', capabilities: ['x-ignore-shared'], uuid: UUID });
});

test('target-page-bits subsection layout', async () => {
  const b = await encode((w) => putConfiguration(w, { machineType: 'virt', targetPageBits: 16 }));
  const name = Buffer.from('configuration/target-page-bits').toString('hex');
  assert.equal(hex(b), `07000000047669727405${'1e'}${name}0000000100000010`);
  assert.deepEqual(await readConfiguration(readerOf(b)), {
    machineType: 'virt',
    targetPageBits: 16,
  });
});

test('bad headers and configurations are refused with what and where', async () => {
  await assert.rejects(readFileHeader(readerOf('5145564e00000003')), {
    message: 'file magic at offset 0: 0x5145564e is not QEVM (0x5145564d)',
  });
  await assert.rejects(readFileHeader(readerOf('5145564d00000002')), {
    message: 'file version at offset 4: version 2 is obsolete and no longer supported',
  });
  await assert.rejects(readFileHeader(readerOf('5145564d00000004')), /unsupported version 4/);
  await assert.rejects(
    readConfiguration(readerOf('01')),
    /configuration section at offset 0: missing/,
  );
  await assert.rejects(readConfiguration(readerOf('07ffffffff')), /exceeds the limit of 256/);
  const unknown = Buffer.concat([
    Buffer.from('07000000016e05', 'hex'),
    Buffer.from([19]),
    Buffer.from('configuration/bogus'),
    Buffer.from('00000001', 'hex'),
  ]);
  await assert.rejects(readConfiguration(readerOf(unknown)), /unknown subsection of configuration/);
  const foreign = Buffer.concat([
    Buffer.from('07000000016e05', 'hex'),
    Buffer.from([5]),
    Buffer.from('timer'),
    Buffer.from('00000001', 'hex'),
  ]);
  await assert.rejects(readConfiguration(readerOf(foreign)), /'timer' does not belong/);
});

test('configuration checks use QEMU wording', () => {
  const local = {
    machineType: 'none',
    targetPageBits: 12,
    targetPageBitsMin: 12,
    validatedCapabilities: ['x-ignore-shared', 'mapped-ram'],
    enabledCapabilities: [],
  };
  assert.equal(configurationMismatch({ machineType: 'none' }, local), null);
  assert.equal(
    configurationMismatch({ machineType: 'pc' }, local),
    "Machine type received is 'pc' and local is 'none'",
  );
  assert.equal(
    configurationMismatch({ machineType: 'none', targetPageBits: 14 }, local),
    'Received TARGET_PAGE_BITS is 14 but local is 12',
  );
  assert.equal(
    configurationMismatch({ machineType: 'none', capabilities: ['x-ignore-shared'] }, local),
    'Capability x-ignore-shared is off, but received capability is on',
  );
  assert.equal(
    configurationMismatch({ machineType: 'none', capabilities: ['zero-copy'] }, local),
    'Received unknown capability zero-copy',
  );
});

test('section headers and footers match the QEMU 7.2 capture', async () => {
  const start = await encode((w) =>
    putSectionHeader(w, {
      type: QEMU_VM_SECTION_START,
      sectionId: 2,
      idstr: 'ram',
      instanceId: 0,
      versionId: 4,
    }),
  );
  assert.equal(hex(start), hex(DEFAULT.subarray(17, 34)));
  const full = await encode((w) =>
    putSectionHeader(w, {
      type: QEMU_VM_SECTION_FULL,
      sectionId: 0,
      idstr: 'timer',
      instanceId: 0,
      versionId: 2,
    }),
  );
  assert.equal(hex(full), hex(DEFAULT.subarray(53351, 53351 + full.length)));
  assert.equal(
    hex(await encode((w) => putSectionHeader(w, { type: 2, sectionId: 2 }))),
    '0200000002',
  );
  assert.equal(
    hex(await encode((w) => putSectionHeader(w, { type: 3, sectionId: 2 }))),
    '0300000002',
  );
  assert.equal(hex(await encode((w) => putSectionFooter(w, 2))), '7e00000002');
  assert.equal(hex(DEFAULT.subarray(62, 67)), '7e00000002');
  assert.equal(hex(await encode(putEof)), '00');

  const r = readerOf(Buffer.concat([start, Buffer.from('7e00000002', 'hex')]));
  assert.equal(await readSectionType(r), QEMU_VM_SECTION_START);
  assert.deepEqual(await readSectionHeader(r, QEMU_VM_SECTION_START), {
    type: QEMU_VM_SECTION_START,
    sectionId: 2,
    idstr: 'ram',
    instanceId: 0,
    versionId: 4,
  });
  await readSectionFooter(r, 2);
  const part = readerOf('0200000007');
  assert.equal(await readSectionType(part), QEMU_VM_SECTION_PART);
  assert.deepEqual(await readSectionHeader(part, QEMU_VM_SECTION_PART), {
    type: QEMU_VM_SECTION_PART,
    sectionId: 7,
  });
  assert.equal(await readSectionType(readerOf('03')), QEMU_VM_SECTION_END);
});

test('unknown section types and bad footers are refused', async () => {
  for (const b of ['05', '06', '07', '7e', '42']) {
    await assert.rejects(readSectionType(readerOf(b)), (e: unknown) => {
      assert.ok(e instanceof StreamError);
      assert.match(e.message, /^section type at offset 0: unknown savevm section type/);
      return true;
    });
  }
  await assert.rejects(readSectionFooter(readerOf('0100000002'), 2, 'ram'), {
    message: 'section footer at offset 0: missing section footer for ram (got byte 0x1)',
  });
  await assert.rejects(readSectionFooter(readerOf('7e00000003'), 2, 'ram'), {
    message:
      'section footer at offset 0: mismatched section id in footer for ram: read 3, expected 2',
  });
});

test('commands: golden bytes, fixed lengths validated, unknown refused', async () => {
  assert.equal(hex(await encode(putCommandOpenReturnPath)), '0800010000');
  assert.equal(hex(await encode((w) => putCommandPing(w, 1))), '080002000400000001');
  assert.equal(hex(await encode(putCommandSwitchoverStart)), '08000b0000');
  assert.equal(hex(await encode((w) => putCommandPackaged(w, 4096))), '080007000400001000');
  assert.equal(
    hex(await encode((w) => putCommand(w, MIG_CMD_RECV_BITMAP, Buffer.from('03726d6d', 'hex')))),
    '08000a000403726d6d',
  );
  await assert.rejects(
    encode((w) => putCommand(w, MIG_CMD_PING)),
    /PING: bad length 0/,
  );
  await assert.rejects(
    encode((w) => putCommand(w, MIG_CMD_MAX)),
    /invalid command type 12/,
  );

  const ping = readerOf('0002000400000007');
  const c = await readCommand(ping);
  assert.deepEqual([c.type, c.name, messageU32(c)], [MIG_CMD_PING, 'PING', 7]);
  assert.equal((await readCommand(readerOf('00010000'))).type, MIG_CMD_OPEN_RETURN_PATH);
  assert.equal((await readCommand(readerOf('000b0000'))).type, MIG_CMD_SWITCHOVER_START);
  assert.equal((await readCommand(readerOf('00080000'))).type, MIG_CMD_ENABLE_COLO);
  assert.equal(
    (await readCommand(readerOf(`00030010${'00'.repeat(16)}`))).type,
    MIG_CMD_POSTCOPY_ADVISE,
  );
  const refused: [string, RegExp][] = [
    ['00000000', /invalid command type 0/],
    ['000c0000', /invalid command type 12/],
    ['ffff0000', /invalid command type 65535/],
    ['0002000300000000', /command PING at offset 0: bad length 3 \(expected 4\)/],
    ['00010001ff', /OPEN_RETURN_PATH at offset 0: bad length 1 \(expected 0\)/],
    ['000b0001ff', /SWITCHOVER_START at offset 0: bad length 1/],
    ['00070002ffff', /PACKAGED at offset 0: bad length 2 \(expected 4\)/],
    ['000300050000000000', /POSTCOPY_ADVISE at offset 0: bad length 5 \(0 or 16\)/],
  ];
  for (const [bytes, err] of refused) await assert.rejects(readCommand(readerOf(bytes)), err);
});

test('return-path messages: golden bytes and the length table', async () => {
  assert.equal(hex(await encode((w) => putRpShut(w, false))), '0001000400000000');
  assert.equal(hex(await encode((w) => putRpShut(w, true))), '0001000400000001');
  assert.equal(hex(await encode((w) => putRpPong(w, 0x11223344))), '0002000411223344');
  assert.equal(hex(await encode(putRpSwitchoverAck)), '00070000');
  assert.equal(hex(await encode((w) => putRpResumeAck(w, 1))), '0006000400000001');

  const m = await readReturnPathMessage(readerOf('00070000'));
  assert.deepEqual(
    [m.type, m.name, m.data.length],
    [MIG_RP_MSG_SWITCHOVER_ACK, 'SWITCHOVER_ACK', 0],
  );
  assert.equal(messageU32(await readReturnPathMessage(readerOf('0002000400000009'))), 9);
  assert.equal((await readReturnPathMessage(readerOf('0001000400000000'))).type, MIG_RP_MSG_SHUT);
  const reqId = Buffer.concat([Buffer.from('000300100000000000002000000010000370632e', 'hex')]);
  const req = await readReturnPathMessage(readerOf(reqId));
  assert.equal(req.type, MIG_RP_MSG_REQ_PAGES_ID);
  assert.deepEqual(pageRequestOf(req), { start: 0x2000n, len: 0x1000, rbName: 'pc.' });
  const plain = await encode((w) =>
    putReturnPathMessage(w, MIG_RP_MSG_REQ_PAGES, Buffer.from('000000000000400000001000', 'hex')),
  );
  assert.deepEqual(pageRequestOf(await readReturnPathMessage(readerOf(plain))), {
    start: 0x4000n,
    len: 0x1000,
    rbName: undefined,
  });
  assert.equal(MIG_RP_MSG_PONG, 2);
  const refused: [string, RegExp][] = [
    ['00000000', /invalid return-path message type 0/],
    [`00080000`, new RegExp(`invalid return-path message type ${MIG_RP_MSG_MAX}`)],
    ['0001000300000000', /SHUT at offset 0: bad length 3 \(expected 4\)/],
    ['00070001ff', /SWITCHOVER_ACK at offset 0: bad length 1 \(expected 0\)/],
    ['00040008' + '00'.repeat(8), /REQ_PAGES at offset 0: bad length 8 \(expected 12\)/],
    ['0003000e' + '00'.repeat(12) + '05' + '61', /does not match its RAMBlock name/],
    ['00050201' + '00'.repeat(513), /length 513 exceeds 512/],
  ];
  for (const [bytes, err] of refused) {
    await assert.rejects(readReturnPathMessage(readerOf(bytes)), err);
  }
});

test('vmdesc: QEMU 7.2 text re-encodes identically; absence is tolerated', async () => {
  const eof = 53533;
  assert.equal(DEFAULT[eof], 0);
  const tail = DEFAULT.subarray(eof + 1);
  const text = await readVmdesc(readerOf(tail));
  assert.ok(text !== null);
  const desc = parseVmdesc(text);
  assert.equal(formatQemuJson(desc), text, 'QEMU json-writer style');
  assert.equal(hex(await encode((w) => putVmdesc(w, desc))), hex(tail));
  assert.equal(await readVmdesc(readerOf('')), null);
  const r = readerOf('01');
  assert.equal(await readVmdesc(r), null);
  assert.equal(r.offset, 0, 'a non-vmdesc byte is left for the caller');
  await assert.rejects(readVmdesc(readerOf('06ffffffff'), 1024), /exceeds the limit of 1024/);
  assert.throws(
    () => parseVmdesc('{"page_size": 4096', 9),
    (e: unknown) => {
      assert.ok(e instanceof StreamError);
      assert.equal(e.offset, 9);
      return true;
    },
  );
  assert.equal(
    formatQemuJson(vmdescOldStyleDevice('0000:00:05.0/vfio', 0, 123)),
    '{"name": "0000:00:05.0/vfio", "instance_id": 0, "size": 123, "fields": ' +
      '[{"name": "data", "size": 123, "type": "buffer"}]}',
  );
});

test('VFIO delimiters: all-ones high word, magic 0xef10, then the code', () => {
  const flags = [
    VFIO_MIG_FLAG_END_OF_STATE,
    VFIO_MIG_FLAG_DEV_CONFIG_STATE,
    VFIO_MIG_FLAG_DEV_SETUP_STATE,
    VFIO_MIG_FLAG_DEV_DATA_STATE,
    VFIO_MIG_FLAG_DEV_INIT_DATA_SENT,
    VFIO_MIG_FLAG_DEV_CONFIG_LOAD_READY,
  ];
  flags.forEach((f, i) => assert.equal(f, (0xffffffffn << 32n) | (0xef10n << 16n) | BigInt(i + 1)));
  assert.equal(VFIO_MIG_FLAG_DEV_DATA_STATE, 0xffffffffef100004n);
  assert.equal(vfioMigFlagName(VFIO_MIG_FLAG_DEV_INIT_DATA_SENT), 'DEV_INIT_DATA_SENT');
  assert.equal(vfioMigFlagName(0n), undefined);
  assert.equal(MULTIFD_MAGIC, 0x11223344);
  assert.equal(MULTIFD_FLAG_DEVICE_STATE, 0x40);
  assert.equal(MULTIFD_DEVICE_STATE_PACKET_SIZE, 12 + 256 + 4 + 4);
});

test('section type constants', () => {
  assert.deepEqual(
    [QEMU_VM_SECTION_START, QEMU_VM_SECTION_PART, QEMU_VM_SECTION_END, QEMU_VM_SECTION_FULL],
    [1, 2, 3, 4],
  );
});
