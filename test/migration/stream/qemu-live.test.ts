/**
 * Against a real QEMU 7.2 (skipped when qemu-system-x86_64 is absent): a QEMU source migrates
 * into our listener and decoder, with the return path answered by our encoder; and a QEMU
 * destination loads a stream written by our encoder.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import {
  MIG_CMD_OPEN_RETURN_PATH,
  MIG_CMD_PING,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  messageU32,
  putConfiguration,
  putEof,
  putFileHeader,
  putRpPong,
  putRpShut,
  putSectionFooter,
  putSectionHeader,
  putVmdesc,
  vmdescOf,
  vmdescVmsdDevice,
} from '../../../src/migration/stream/index.ts';
import type { QEMUFileWriter } from '../../../src/migration/stream/index.ts';
import {
  RAM_SECTION_IDSTR,
  RAM_SECTION_VERSION_ID,
  RamRecordEncoder,
} from '../../../src/migration/ram/format.ts';
import { connect, listen } from '../../../src/migration/transport/index.ts';
import {
  GUEST_RAM,
  PAGE,
  PATTERN_LOADS,
  patternFile,
  patternFiles,
  patternRam,
  qemuGuestRam,
  qemuOrSkip,
  setReturnPath,
  sourceArgs,
  startQemu,
  startQemuDestination,
  waitMigration,
} from '../../helpers/qemu.ts';
import { decodeQemuStream } from './qemu-stream.ts';

const { qemu, skip } = qemuOrSkip('live QEMU tests');

async function sourceToUs(t: TestContext, shutError: boolean): Promise<void> {
  const listener = await listen('tcp:127.0.0.1:0');
  t.after(() => listener.close());
  const port = listener.uri.transport === 'tcp' ? listener.uri.port : 0;
  assert.ok(port > 0);
  const q = await startQemu(qemu!, sourceArgs, { t, files: patternFiles() });
  await setReturnPath(q.qmp);
  await q.qmp.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
  const conn = await listener.accept(AbortSignal.timeout(10_000));
  t.after(() => conn.destroy());
  const rp = conn.openWriter();
  const d = await decodeQemuStream(conn.openReader(), {}, (c) => {
    // A destination answers every PING with a PONG of the same value.
    if (c.type === MIG_CMD_PING) putRpPong(rp, messageU32(c));
  });
  assert.deepEqual(
    d.commands.map((c) => [c.type, c.data.toString('hex')]),
    [
      [MIG_CMD_OPEN_RETURN_PATH, ''],
      [MIG_CMD_PING, '00000001'],
    ],
  );
  assert.deepEqual(
    d.sections.map((s) => [s.kind, s.idstr]),
    [
      ['START', 'ram'],
      ['PART', 'ram'],
      ['END', 'ram'],
      ['FULL', 'timer'],
      ['FULL', 'globalstate'],
    ],
  );
  assert.ok(d.ram.equals(patternRam()), 'pages received equal the loaded pattern');
  putRpShut(rp, shutError);
  await rp.flush();
  const info = await waitMigration(q.qmp);
  assert.equal(info.status, shutError ? 'failed' : 'completed');
}

test('a QEMU 7.2 source migrates into our decoder; SHUT 0 completes it', { skip }, (t) =>
  sourceToUs(t, false),
);

test('SHUT 1 on our return path fails the QEMU 7.2 source', { skip }, (t) => sourceToUs(t, true));

/** What we send: the pattern pages, one explicit zero page, and globalstate "prelaunch". */
function writeStream(w: QEMUFileWriter): void {
  const ram = new RamRecordEncoder();
  putFileHeader(w);
  putConfiguration(w, { machineType: 'none' });
  putSectionHeader(w, {
    type: QEMU_VM_SECTION_START,
    sectionId: 2,
    idstr: RAM_SECTION_IDSTR,
    instanceId: 0,
    versionId: RAM_SECTION_VERSION_ID,
  });
  ram.putMemSize(w, [{ idstr: 'ram', usedLength: GUEST_RAM }]);
  ram.putEos(w);
  putSectionFooter(w, 2);
  putSectionHeader(w, { type: QEMU_VM_SECTION_PART, sectionId: 2 });
  ram.resetBlock();
  PATTERN_LOADS.forEach((l, i) => {
    const file = patternFile(i);
    for (let p = 0; p < l.pages; p++) {
      const page = file.subarray(p * PAGE, (p + 1) * PAGE);
      if (page.every((b) => b === 0)) ram.putZeroPage(w, 'ram', l.addr + p * PAGE);
      else ram.putPage(w, 'ram', l.addr + p * PAGE, page);
    }
  });
  ram.putEos(w);
  putSectionFooter(w, 2);
  putSectionHeader(w, { type: QEMU_VM_SECTION_END, sectionId: 2 });
  ram.putEos(w);
  putSectionFooter(w, 2);
  putSectionHeader(w, {
    type: QEMU_VM_SECTION_FULL,
    sectionId: 4,
    idstr: 'globalstate',
    instanceId: 0,
    versionId: 1,
  });
  const runstate = Buffer.alloc(100);
  runstate.write('prelaunch', 'latin1');
  w.putBe32('prelaunch'.length + 1);
  w.putBuffer(runstate);
  putSectionFooter(w, 4);
  putEof(w);
  putVmdesc(
    w,
    vmdescOf(PAGE, [
      vmdescVmsdDevice('globalstate', 0, {
        vmsd_name: 'globalstate',
        version: 1,
        fields: [
          { name: 'size', type: 'uint32', size: 4 },
          { name: 'runstate', type: 'buffer', size: 100 },
        ],
      }),
    ]),
  );
}

test('a QEMU 7.2 destination loads a stream written by our encoder', { skip }, async (t) => {
  const { q, uri } = await startQemuDestination(qemu!, t);
  const conn = await connect(uri);
  t.after(() => conn.destroy());
  const w = conn.openWriter();
  writeStream(w);
  await w.close();
  const info = await waitMigration(q.qmp);
  assert.equal(info.status, 'completed', q.log);
  const status = await q.qmp.execute<{ status: string }>('query-status');
  assert.equal(status.status, 'prelaunch');
  assert.ok((await qemuGuestRam(q)).equals(patternRam()), 'guest RAM equals what we sent');
  assert.doesNotMatch(q.log, /vmdescription/);
});
