import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { inspectFile, renderText } from '../../src/inspect/index.ts';
import type { InspectReport, InspectedSection } from '../../src/inspect/index.ts';
import { fixture } from '../helpers/repo.ts';

const GUEST_RAM = 16 << 20;

function sectionRows(r: InspectReport): unknown[] {
  return r.items.map((i) =>
    i.item === 'section'
      ? [i.offset, i.length, i.type, i.sectionId, i.idstr, i.instanceId, i.versionId, i.complete]
      : [i.offset, i.name],
  );
}

/**
 * Both captures hold the same sections. With x-ignore-shared and validate-uuid the
 * configuration is `cfgExtra` bytes longer and the MEM_SIZE block list `memExtra` bytes longer
 * (the block's u64 guest address), which moves everything after them.
 */
function assertCaptureShape(r: InspectReport, cfgExtra: number, memExtra: number): void {
  const shift = cfgExtra + memExtra;
  // MEM_SIZE: u64 header, "ram" counted, u64 used length [, u64 address]; then EOS.
  const memSizeBytes = 8 + 4 + 8 + memExtra + 8;
  assert.equal(r.error, null);
  assert.equal(r.version, 3);
  assert.equal(r.configuration?.machineType, 'none');
  assert.equal(r.configuration?.targetPageBits, null);
  // START = u8 type, u32 id, u8 + "ram", u32 instance, u32 version (17), payload, footer (5).
  assert.deepEqual(sectionRows(r), [
    [17 + cfgExtra, 17 + memSizeBytes + 5, 'START', 2, 'ram', 0, 4, true],
    [67 + shift, 53266, 'PART', 2, 'ram', 0, 4, true],
    [53333 + shift, 18, 'END', 2, 'ram', 0, 4, true],
    [53351 + shift, 48, 'FULL', 0, 'timer', 0, 2, true],
    [53399 + shift, 134, 'FULL', 4, 'globalstate', 0, 1, true],
  ]);
  const [start, part, end, timer, globalstate] = r.items as InspectedSection[];
  assert.deepEqual(start!.payload, {
    format: 'ram',
    memSize: GUEST_RAM,
    blocks: [
      memExtra === 0
        ? { idstr: 'ram', usedLength: GUEST_RAM }
        : { idstr: 'ram', usedLength: GUEST_RAM, mrAddr: 0 },
    ],
    pages: 0,
    zeroPages: 0,
    multifdFlushes: 0,
  });
  assert.deepEqual(part!.payload, {
    format: 'ram',
    memSize: null,
    blocks: null,
    pages: 4,
    zeroPages: 4092,
    multifdFlushes: 0,
  });
  assert.equal(end!.payload?.format === 'ram' && end!.payload.pages + end!.payload.zeroPages, 0);
  assert.deepEqual(timer!.payload, { format: 'timer', cpuTicksOffset: '0', cpuClockOffset: '0' });
  assert.deepEqual(globalstate!.payload, { format: 'globalstate', runState: 'prelaunch' });
  assert.equal(r.eof, 53533 + shift);
  assert.equal(r.vmdesc?.offset, 53534 + shift);
  assert.equal(r.vmdesc?.length, 491);
  assert.deepEqual(
    r.vmdesc?.desc.devices.map((d) => [d.name, d.instance_id]),
    [
      ['timer', 0],
      ['globalstate', 0],
    ],
  );
  assert.deepEqual(r.totals.ram, {
    pageSize: 4096,
    blocks: [{ idstr: 'ram', usedLength: GUEST_RAM, pages: 4, zeroPages: 4092 }],
    pages: 4,
    zeroPages: 4092,
    pageBytes: 4 * 4096,
    multifdFlushes: 0,
  });
  assert.deepEqual(r.totals.vfio, []);
  assert.deepEqual(r.totals.sections, { START: 1, PART: 1, END: 1, FULL: 2 });
  const b = r.totals.bytes;
  assert.deepEqual(
    [b.header, b.START, b.PART, b.END, b.FULL, b.command, b.eof, b.vmdesc, b.trailing],
    [17 + cfgExtra, 17 + memSizeBytes + 5, 53266, 18, 182, 0, 1, 491, 0],
  );
  assert.equal(
    Object.values(b).reduce((n: number, x: number) => n + x, 0),
    r.size,
  );
  assert.deepEqual(
    r.totals.entries.map((e) => [e.idstr, e.sectionId, e.format, e.sections, e.bytes]),
    [
      ['ram', 2, 'ram', 3, 17 + memSizeBytes + 5 + 53266 + 18],
      ['timer', 0, 'timer', 1, 48],
      ['globalstate', 4, 'globalstate', 1, 134],
    ],
  );
}

test('QEMU 7.2 default capture: every section, page count, vmdesc and byte total', async () => {
  const r = await inspectFile(fixture('qemu-7.2-default.bin'));
  assert.equal(r.size, 54025);
  assertCaptureShape(r, 0, 0);
  assert.deepEqual(r.configuration?.capabilities, []);
  assert.equal(r.configuration?.uuid, null);
});

test('QEMU 7.2 x-ignore-shared + validate-uuid capture: configuration and block addresses', async () => {
  const r = await inspectFile(fixture('qemu-7.2-ignore-shared-uuid.bin'));
  assert.equal(r.size, 54125);
  assertCaptureShape(r, 92, 8);
  assert.deepEqual(r.configuration?.capabilities, ['x-ignore-shared']);
  assert.equal(r.configuration?.uuid, '123456789abcdef01122334455667788');
});

test('--offset: a stream that starts inside a file decodes the same', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'inspect-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'offset.bin');
  writeFileSync(
    path,
    Buffer.concat([Buffer.alloc(4096, 0xee), readFileSync(fixture('qemu-7.2-default.bin'))]),
  );
  const shifted = await inspectFile(path, { offset: 4096 });
  assert.deepEqual(shifted, await inspectFile(fixture('qemu-7.2-default.bin')));
});

test('text summary of the default capture', async () => {
  const r = await inspectFile(fixture('qemu-7.2-default.bin'));
  const text = renderText(r, { name: 'x.bin' });
  const lines = text.split('\n');
  assert.equal(lines[0], 'x.bin: QEMU migration stream version 3, 54025 bytes');
  assert.equal(lines[1], "configuration: machine type 'none'");
  for (const re of [
    /^ +17 {2}START +2 {2}ram \(instance 0, v4\) +MEM_SIZE 16 MiB in 1 block$/,
    /^ +67 {2}PART +2 {2}ram +4 pages, 4092 zero pages$/,
    /^ +53333 {2}END +2 {2}ram +EOS only$/,
    /^ +53351 {2}FULL +0 {2}timer \(instance 0, v2\) +cpu_ticks_offset 0, cpu_clock_offset 0$/,
    /^ +53399 {2}FULL +4 {2}globalstate \(instance 0, v1\) +run state 'prelaunch'$/,
    /^ +53533 {2}EOF$/,
    /^ +53534 {2}VMDESC +491 B +page_size 4096, 2 devices$/,
    /^ +timer \(instance 0\): vmsd timer v2, 3 fields, 24 B$/,
    /^ +ram +16 MiB +4 +4092$/,
    /^ +total +54025$/,
  ]) {
    assert.ok(
      lines.some((l) => re.test(l)),
      `no line matches ${re}\n${text}`,
    );
  }
});
