/**
 * `qemu_loadvm_state` on hand-made streams: commands (return path, PING → PONG,
 * SWITCHOVER_START, refused ones), section binding and versions, footers, switchover-ack
 * counting, the vmdesc, and RAM records — with the exact error of each bad input.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuestMemory } from '../../src/memory/index.ts';
import {
  LoadVMState,
  MigrationEvents,
  MigrationOptions,
  RamHandler,
  SaveVMRegistry,
  localConfiguration,
  realClock,
  MigrationStats,
} from '../../src/migration/index.ts';
import type { SaveVMHandlers } from '../../src/migration/index.ts';
import { RamRecordEncoder } from '../../src/migration/ram/format.ts';
import {
  MIG_CMD_POSTCOPY_ADVISE,
  MIG_RP_MSG_PONG,
  MIG_RP_MSG_SWITCHOVER_ACK,
  MemorySink,
  QEMUFileWriter,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  messageU32,
  putCommand,
  putCommandOpenReturnPath,
  putCommandPing,
  putCommandSwitchoverStart,
  putConfiguration,
  putEof,
  putFileHeader,
  putSectionFooter,
  putSectionHeader,
  putVmdesc,
  readReturnPathMessage,
  vmdescOf,
} from '../../src/migration/stream/index.ts';
import type { QEMUFileWriter as Writer } from '../../src/migration/stream/index.ts';
import { encode, readerOf } from './stream/encode.ts';

const PAGE = 4096;

interface Bench {
  registry: SaveVMRegistry;
  memory: GuestMemory;
  options: MigrationOptions;
  log: string[];
}

/** A destination with 4 pages of RAM "ram" and an entry "dev" (v2) that reads one u32. */
function bench(caps: string[] = []): Bench {
  const options = new MigrationOptions({
    capabilities: caps.map((c) => ({ capability: c as 'events', state: true })),
  });
  const registry = new SaveVMRegistry();
  const memory = GuestMemory.flat([{ idstr: 'ram', size: 4 * PAGE }]);
  const env = {
    stats: new MigrationStats(),
    clock: realClock,
    events: new MigrationEvents(options),
    options,
    guestRunning: () => true,
  };
  const ram = new RamHandler(memory, env);
  registry.register('ram', ram, { instanceId: 0, versionId: 4 });
  const log: string[] = [];
  const dev: SaveVMHandlers = {
    async loadState(f, v) {
      log.push(`dev v${v} ${await f.getBe32()}`);
    },
    switchoverStart: () => Promise.resolve(void log.push('switchover-start')),
  };
  registry.register('dev', dev, { instanceId: 0, versionId: 2 });
  return { registry, memory, options, log };
}

function prologue(w: Writer): void {
  putFileHeader(w);
  putConfiguration(w, { machineType: 'none' });
}

function section(
  w: Writer,
  type: 1 | 2 | 3 | 4,
  id: number,
  body: () => void,
  idstr = 'dev',
  version = 1,
): void {
  if (type === QEMU_VM_SECTION_START || type === QEMU_VM_SECTION_FULL) {
    putSectionHeader(w, { type, sectionId: id, idstr, instanceId: 0, versionId: version });
  } else {
    putSectionHeader(w, { type, sectionId: id });
  }
  body();
  putSectionFooter(w, id);
}

interface Loaded {
  error: Error | null;
  rp: Buffer;
  load: LoadVMState;
}

async function load(b: Bench, bytes: Buffer, withRp = true): Promise<Loaded> {
  const rpSink = new MemorySink();
  const load = new LoadVMState({
    registry: b.registry,
    file: readerOf(bytes),
    local: localConfiguration('none', b.options),
    sendSectionFooter: true,
    capability: (c) => b.options.capability(c),
    openReturnPath: withRp ? () => new QEMUFileWriter(rpSink, { chunkSize: 64 }) : null,
  });
  let error: Error | null = null;
  try {
    await load.load();
  } catch (err) {
    error = err as Error;
  }
  await load.returnPath?.flush();
  return { error, rp: rpSink.bytes(), load };
}

async function rpMessages(rp: Buffer): Promise<string[]> {
  const r = readerOf(rp);
  const out: string[] = [];
  while (!(await r.atEnd())) {
    const m = await readReturnPathMessage(r);
    out.push(m.data.length === 4 ? `${m.name} ${messageU32(m)}` : m.name);
  }
  return out;
}

test('commands: the return path opens once, PING is answered, SWITCHOVER_START reaches hooks', async () => {
  const b = bench();
  const bytes = await encode((w) => {
    prologue(w);
    putCommandOpenReturnPath(w);
    putCommandPing(w, 1);
    putCommandOpenReturnPath(w); // tolerated, as QEMU only reports it
    putCommandPing(w, 0xabcdef);
    section(w, QEMU_VM_SECTION_START, 7, () => w.putBe32(11), 'dev', 2);
    putCommandSwitchoverStart(w);
    section(w, QEMU_VM_SECTION_END, 7, () => w.putBe32(12));
    putEof(w);
    putVmdesc(w, vmdescOf(PAGE, []));
  });
  const { error, rp, load: l } = await load(b, bytes);
  assert.equal(error, null);
  assert.deepEqual(await rpMessages(rp), ['PONG 1', 'PONG 11259375']);
  assert.deepEqual(b.log, ['dev v2 11', 'switchover-start', 'dev v2 12']);
  assert.deepEqual(l.warnings, []);
  assert.equal(MIG_RP_MSG_PONG, 2);
});

test('refused input: each error names where it is and why', async () => {
  const cases: [string, (w: Writer) => void, RegExp][] = [
    [
      'PING without a return path',
      (w) => putCommandPing(w, 5),
      /^command PING at offset 17: CMD_PING \(0x5\) received with no return path$/,
    ],
    [
      'postcopy command',
      (w) => putCommand(w, MIG_CMD_POSTCOPY_ADVISE),
      /^command POSTCOPY_ADVISE at offset 17: not supported \(postcopy, COLO/,
    ],
    [
      'unknown entry',
      (w) => section(w, QEMU_VM_SECTION_FULL, 3, () => w.putBe32(0), 'nic'),
      /^section header at offset 17: Unknown savevm section or instance 'nic' 0\. Make sure/,
    ],
    [
      'newer version',
      (w) => section(w, QEMU_VM_SECTION_FULL, 3, () => w.putBe32(0), 'dev', 3),
      /^section 'dev' instance 0 \(section id 3\) at offset 17: savevm: unsupported version 3 for 'dev' v2$/,
    ],
    [
      'PART of an unbound section',
      (w) => section(w, QEMU_VM_SECTION_PART, 9, () => w.putBe32(0)),
      /^section header at offset 17: Unknown savevm section 9$/,
    ],
    [
      'wrong footer',
      (w) => {
        section(w, QEMU_VM_SECTION_START, 3, () => w.putBe32(0));
        // A PART whose footer names another section.
        putSectionHeader(w, { type: QEMU_VM_SECTION_PART, sectionId: 3 });
        w.putBe32(1);
        putSectionFooter(w, 4);
      },
      /^section 'dev' instance 0 \(section id 3\): section footer at offset \d+: mismatched section id in footer for dev: read 4, expected 3$/,
    ],
    [
      'unknown section type',
      (w) => w.putU8(0x42),
      /^section type at offset 17: unknown savevm section type 0x42$/,
    ],
    [
      'a RAM block we do not have',
      (w) =>
        section(
          w,
          QEMU_VM_SECTION_START,
          1,
          () => {
            const enc = new RamRecordEncoder();
            enc.putMemSize(w, [{ idstr: 'pc.ram', usedLength: 4 * PAGE }]);
            enc.putEos(w);
          },
          'ram',
          4,
        ),
      /^section 'ram' instance 0 \(section id 1\) at offset \d+: Unknown ramblock "pc\.ram", cannot accept migration$/,
    ],
    [
      'a page past the block (no MEM_SIZE to bound it)',
      (w) =>
        section(
          w,
          QEMU_VM_SECTION_START,
          1,
          () => {
            const enc = new RamRecordEncoder();
            enc.putZeroPage(w, 'ram', 4 * PAGE);
            enc.putEos(w);
          },
          'ram',
          4,
        ),
      /^section 'ram' instance 0 \(section id 1\) at offset \d+: page offset 0x4000 is outside RAM block 'ram' \(0x4000 bytes\)$/,
    ],
  ];
  for (const [what, put, error] of cases) {
    const b = bench();
    const bytes = await encode((w) => {
      prologue(w);
      put(w);
      putEof(w);
    });
    const { error: got } = await load(b, bytes, what !== 'PING without a return path');
    assert.match(got?.message ?? 'no error', error, what);
  }
});

test('RAM records land in guest memory; a zero page only writes when it must', async () => {
  const b = bench();
  const block = b.memory.block('ram')!;
  block.fill(2 * PAGE, PAGE, 0x55); // a zero record must clear it
  const page = Buffer.alloc(PAGE, 0xa7);
  const bytes = await encode((w) => {
    prologue(w);
    const enc = new RamRecordEncoder();
    section(
      w,
      QEMU_VM_SECTION_START,
      1,
      () => {
        enc.putMemSize(w, [{ idstr: 'ram', usedLength: 4 * PAGE }]);
        enc.putEos(w);
      },
      'ram',
      4,
    );
    section(w, QEMU_VM_SECTION_PART, 1, () => {
      enc.putPage(w, 'ram', PAGE, page);
      enc.putZeroPage(w, 'ram', 2 * PAGE);
      enc.putZeroPage(w, 'ram', 3 * PAGE);
      enc.putEos(w);
    });
    putEof(w);
  });
  const { error, load: l } = await load(b, bytes);
  assert.equal(error, null);
  assert.ok(Buffer.from(block.read(PAGE, PAGE)).equals(page));
  assert.ok(block.isZeroPage(2) && block.isZeroPage(3) && block.isZeroPage(0));
  assert.deepEqual(l.warnings, ['Expected vmdescription section, but the stream ended']);
});

test('switchover-ack: sent at OPEN_RETURN_PATH when nobody needs it, else on the last approval', async () => {
  // Nobody needs it.
  const idle = bench(['return-path', 'switchover-ack']);
  const opening = await encode((w) => {
    prologue(w);
    putCommandOpenReturnPath(w);
    putEof(w);
  });
  const first = await load(idle, opening);
  assert.equal(first.error, null);
  assert.deepEqual(await rpMessages(first.rp), ['SWITCHOVER_ACK']);
  assert.equal(MIG_RP_MSG_SWITCHOVER_ACK, 7);

  // Two entries need it: the ACK goes out after the second approval, a third is spurious.
  const b = bench(['return-path', 'switchover-ack']);
  let ctx: { approveSwitchover(): Promise<void> } | null = null;
  for (const id of ['a', 'b']) {
    b.registry.register(
      `need-${id}`,
      {
        switchoverAckNeeded: () => true,
        loadSetup: (c) => Promise.resolve(void (ctx = c)),
        async loadState(f) {
          await f.getU8();
          await ctx!.approveSwitchover();
        },
      },
      { versionId: 1 },
    );
  }
  const approvals = (n: number) =>
    encode((w) => {
      prologue(w);
      putCommandOpenReturnPath(w);
      for (let i = 0; i < n; i++) {
        section(
          w,
          QEMU_VM_SECTION_FULL,
          10 + i,
          () => w.putU8(0),
          i % 2 === 0 ? 'need-a' : 'need-b',
        );
      }
      putEof(w);
    });
  const two = await load(b, await approvals(2));
  assert.equal(two.error, null);
  assert.deepEqual(await rpMessages(two.rp), ['SWITCHOVER_ACK']);
  assert.equal(two.load.switchoverAckPending, 0);

  const three = await load(b, await approvals(3));
  assert.match(
    three.error?.message ?? '',
    /^section 'need-a' instance 0 \(section id 12\) at offset \d+: switchover approved, but no approval was pending \(spurious approval\)$/,
  );
});
