/**
 * What the source writes, decoded back with the stream codec: a 16-page guest and a toy
 * device migrated into a `file:` URI. Golden bytes for the header, the configuration and
 * RAM's START section; the structure of everything after it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import {
  QEMU_VM_COMMAND,
  QEMU_VM_EOF,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_START,
  parseVmdesc,
  readCommand,
  readConfiguration,
  readFileHeader,
  readSectionFooter,
  readSectionHeader,
  readSectionType,
  readVmdesc,
} from '../../src/migration/stream/index.ts';
import type { QEMUFileReader, SectionStartHeader } from '../../src/migration/stream/index.ts';
import {
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_ZERO,
  RamRecordDecoder,
} from '../../src/migration/ram/format.ts';
import { GLOBAL_STATE_PAYLOAD_SIZE, readGlobalState } from '../../src/migration/index.ts';
import { readerOf } from './stream/encode.ts';
import {
  TAG_COMPLETE,
  TAG_ITER,
  TAG_SETUP,
  TAG_STATE,
  TOY_STATE,
  ToyEntry,
  registerToy,
} from './toy-entry.ts';
import { createVmHalf } from './vm-half.ts';

const PAGE = 4096;
const PAGES = 16;
const DATA_PAGES = [1, 3, 15];

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-structure-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Migrates the small guest into a file; returns the stream and the guest's bytes. */
async function capture(t: TestContext): Promise<{ stream: Buffer; ram: Buffer }> {
  const src = await createVmHalf({
    role: 'source',
    ramMiB: (PAGES * PAGE) / (1 << 20),
    populateSeed: false,
    register: (r) => registerToy(r, new ToyEntry({ iterations: 1 })),
  });
  t.after(() => src.destroy());
  const block = src.memory.block('ram')!;
  for (const p of DATA_PAGES) block.fill(p * PAGE, PAGE, 0x40 + p);
  const path = join(tempDir(t), 'stream.bin');
  src.migration.outgoing.migrate(`file:${path}`);
  assert.equal(await src.migration.outgoing.whenFinished(), 'completed');
  assert.equal(src.runControl.runState, 'postmigrate');
  return { stream: readFileSync(path), ram: Buffer.from(block.read(0, PAGES * PAGE)) };
}

interface Decoded {
  sections: string[];
  ram: Buffer;
  runState: string;
  vmdescText: string;
}

async function ramRecords(r: QEMUFileReader, dec: RamRecordDecoder, ram: Buffer): Promise<string> {
  const out: string[] = [];
  for (;;) {
    const kind = await dec.readRecord(r);
    if (kind === RAM_SAVE_FLAG_EOS) return [...out, 'EOS'].join(' ');
    if (kind === RAM_SAVE_FLAG_MEM_SIZE) {
      out.push(`MEM_SIZE(${dec.blocks.map((b) => `${b.idstr}:${b.usedLength}`).join(',')})`);
    } else if (kind === RAM_SAVE_FLAG_ZERO) {
      ram.fill(dec.fill, dec.offset, dec.offset + PAGE);
      out.push(`Z${dec.offset / PAGE}`);
    } else if (kind === RAM_SAVE_FLAG_PAGE) {
      await r.readInto(ram.subarray(dec.offset, dec.offset + PAGE));
      out.push(`P${dec.offset / PAGE}`);
    }
  }
}

async function toyRecord(r: QEMUFileReader): Promise<string> {
  const tag = await r.getBe32();
  switch (tag) {
    case TAG_SETUP:
      return 'SETUP';
    case TAG_ITER:
      return `ITER ${await r.getBe32()}`;
    case TAG_COMPLETE:
      return 'COMPLETE';
    case TAG_STATE: {
      const state = await r.getBytes(await r.getBe32(), 'toy state', 1024);
      assert.ok(state.equals(TOY_STATE));
      return 'STATE';
    }
    default:
      throw new Error(`toy tag ${tag}`);
  }
}

async function decode(stream: Buffer): Promise<Decoded> {
  const r = readerOf(stream);
  await readFileHeader(r);
  assert.deepEqual(await readConfiguration(r), { machineType: 'none' });
  const bound = new Map<number, SectionStartHeader>();
  const dec = new RamRecordDecoder();
  const ram = Buffer.alloc(PAGES * PAGE, 0xee);
  const sections: string[] = [];
  let runState = '';
  for (;;) {
    const type = await readSectionType(r);
    if (type === QEMU_VM_EOF) break;
    if (type === QEMU_VM_COMMAND) {
      sections.push(`COMMAND ${(await readCommand(r)).name}`);
      continue;
    }
    const h = await readSectionHeader(r, type);
    if (h.type === QEMU_VM_SECTION_START || h.type === QEMU_VM_SECTION_FULL) {
      bound.set(h.sectionId, h);
    }
    const start = bound.get(h.sectionId)!;
    const kind = ({ 1: 'START', 2: 'PART', 3: 'END', 4: 'FULL' } as const)[h.type];
    let payload: string;
    if (start.idstr === 'ram') {
      payload = await ramRecords(r, dec, ram);
    } else if (start.idstr === 'globalstate') {
      runState = await readGlobalState(r);
      payload = runState;
    } else {
      payload = await toyRecord(r);
    }
    await readSectionFooter(r, h.sectionId);
    const head =
      h.type === QEMU_VM_SECTION_START || h.type === QEMU_VM_SECTION_FULL
        ? `${kind} ${h.sectionId} ${h.idstr}.${h.instanceId} v${h.versionId}`
        : `${kind} ${h.sectionId}`;
    sections.push(`${head}: ${payload}`);
  }
  const vmdescText = await readVmdesc(r);
  assert.ok(vmdescText !== null);
  assert.equal(await r.atEnd(), true, 'nothing after the vmdesc');
  return { sections, ram, runState, vmdescText };
}

test('the source stream: header, configuration, START/PART, SWITCHOVER_START, END, FULL, EOF, vmdesc', async (t) => {
  const { stream, ram } = await capture(t);

  // Header, configuration "none", then ram START: section 1 (QEMU's "timer" has 0),
  // MEM_SIZE [ram 64 KiB], EOS, footer.
  const golden = [
    '5145564d00000003',
    '07000000046e6f6e65',
    '0100000001' + '0372616d' + '00000000' + '00000004',
    '0000000000010004' + '0372616d' + '0000000000010000',
    '0000000000000010',
    '7e00000001',
  ].join('');
  assert.equal(stream.subarray(0, golden.length / 2).toString('hex'), golden);

  const d = await decode(stream);
  const part = Array.from({ length: PAGES }, (_, p) =>
    DATA_PAGES.includes(p) ? `P${p}` : `Z${p}`,
  ).join(' ');
  assert.deepEqual(d.sections, [
    'START 1 ram.0 v4: MEM_SIZE(ram:65536) EOS',
    'START 3 toy.0 v1: SETUP',
    `PART 1: ${part} EOS`,
    'PART 3: ITER 1',
    'COMMAND SWITCHOVER_START',
    'END 1: EOS',
    'END 3: COMPLETE',
    'FULL 2 globalstate.0 v1: running',
    'FULL 3 toy.0 v1: STATE',
  ]);
  assert.ok(d.ram.equals(ram), 'the pages decode to the guest RAM');

  // vmdesc: configuration (QEMU ≥ 8.2), page size, the FULL sections only.
  const vmdesc = parseVmdesc(d.vmdescText);
  const toyStateSize = 8 + TOY_STATE.length;
  assert.deepEqual(vmdesc, {
    configuration: {
      vmsd_name: 'configuration',
      version: 1,
      fields: [
        { name: 'len', type: 'uint32', size: 4 },
        { name: 'name', type: 'buffer', size: 4 },
      ],
    },
    page_size: PAGE,
    devices: [
      {
        name: 'globalstate',
        instance_id: 0,
        vmsd_name: 'globalstate',
        version: 1,
        fields: [
          { name: 'size', type: 'uint32', size: 4 },
          { name: 'runstate', type: 'buffer', size: 100 },
        ],
      },
      {
        name: 'toy',
        instance_id: 0,
        size: toyStateSize,
        fields: [{ name: 'data', size: toyStateSize, type: 'buffer' }],
      },
    ],
  });
  assert.ok(d.vmdescText.startsWith('{"configuration": {"vmsd_name": "configuration"'));
  assert.equal(GLOBAL_STATE_PAYLOAD_SIZE, 104);
});

test('file: has no return path: the return-path capability fails the migration', async (t) => {
  const src = await createVmHalf({
    role: 'source',
    ramMiB: 1,
    options: { capabilities: [{ capability: 'return-path', state: true }] },
  });
  t.after(() => src.destroy());
  src.migration.outgoing.migrate(`file:${join(tempDir(t), 'x.bin')}`);
  assert.equal(await src.migration.outgoing.whenFinished(), 'failed');
  assert.match(
    src.migration.query()['error-desc'] ?? '',
    /Unable to open return-path: file .* has no way back/,
  );
  assert.equal(src.runControl.runState, 'running');
  assert.deepEqual(src.notified, ['precopy-failed']);
});
