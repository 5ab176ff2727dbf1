/**
 * Property tests of the framing: random frame sequences round-trip under any chunking;
 * garbage only ever yields a StreamError and never allocates past the caps; a valid stream
 * truncated at any offset fails naming exactly that offset.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  MIG_CMD_OPEN_RETURN_PATH,
  MIG_CMD_PACKAGED,
  MIG_CMD_PING,
  MIG_CMD_POSTCOPY_ADVISE,
  MIG_CMD_POSTCOPY_RAM_DISCARD,
  MIG_CMD_RECV_BITMAP,
  MIG_CMD_SWITCHOVER_START,
  QEMU_VM_COMMAND,
  QEMU_VM_EOF,
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
  QEMUFileReader,
  StreamError,
  putCommand,
  putConfiguration,
  putEof,
  putFileHeader,
  putSectionFooter,
  putSectionHeader,
  putVmdesc,
  readCommand,
  readConfiguration,
  readFileHeader,
  readSectionFooter,
  readSectionHeader,
  readSectionType,
  readVmdesc,
} from '../../../src/migration/stream/index.ts';
import type {
  MigrationConfiguration,
  QEMUFileWriter,
  SectionHeader,
} from '../../../src/migration/stream/index.ts';
import { encode } from './encode.ts';
import { feedInChunks } from './feed.ts';

type Frame =
  | { t: 'section'; header: SectionHeader; payload: Uint8Array }
  | { t: 'command'; cmd: number; data: Uint8Array };

interface Stream {
  config: MigrationConfiguration;
  frames: Frame[];
  vmdesc: string | null;
}

const PAYLOAD_CAP = 4096;
const VMDESC_CAP = 1 << 20;

function putStream(w: QEMUFileWriter, s: Stream): void {
  putFileHeader(w);
  putConfiguration(w, s.config);
  for (const f of s.frames) {
    if (f.t === 'command') {
      putCommand(w, f.cmd, f.data);
      continue;
    }
    putSectionHeader(w, f.header);
    w.putBe32(f.payload.length);
    w.putBuffer(f.payload);
    putSectionFooter(w, f.header.sectionId);
  }
  putEof(w);
  if (s.vmdesc !== null) putVmdesc(w, s.vmdesc);
}

/** The decoder for this test grammar: section payloads are `u32 len` + bytes. */
async function readStream(r: QEMUFileReader): Promise<Stream> {
  await readFileHeader(r);
  const config = await readConfiguration(r);
  const frames: Frame[] = [];
  for (;;) {
    const type = await readSectionType(r);
    if (type === QEMU_VM_EOF) break;
    if (type === QEMU_VM_COMMAND) {
      const c = await readCommand(r);
      frames.push({ t: 'command', cmd: c.type, data: c.data });
      continue;
    }
    const header = await readSectionHeader(r, type);
    const len = await r.getBe32('payload length');
    const payload = await r.getBytes(len, 'payload', PAYLOAD_CAP);
    await readSectionFooter(r, header.sectionId);
    frames.push({ t: 'section', header, payload });
  }
  return { config, frames, vmdesc: await readVmdesc(r, VMDESC_CAP) };
}

const latin1 = (max: number): fc.Arbitrary<string> =>
  fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b).toString('latin1'));
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = (max: number): fc.Arbitrary<Uint8Array> =>
  fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));
const fixed = (n: number): fc.Arbitrary<Uint8Array> =>
  fc.uint8Array({ minLength: n, maxLength: n }).map((b) => Buffer.from(b));

const configArb: fc.Arbitrary<MigrationConfiguration> = fc
  .record(
    {
      machineType: latin1(40),
      targetPageBits: fc.integer({ min: 10, max: 16 }),
      capabilities: fc.array(latin1(20), { minLength: 1, maxLength: 4 }),
      uuid: fixed(16),
    },
    { requiredKeys: ['machineType'] },
  )
  .map((c) => c as MigrationConfiguration);

const sectionArb: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({
    t: fc.constant('section' as const),
    header: fc.record({
      type: fc.constantFrom(QEMU_VM_SECTION_START, QEMU_VM_SECTION_FULL),
      sectionId: u32,
      idstr: latin1(255),
      instanceId: u32,
      versionId: u32,
    }),
    payload: bytes(64),
  }),
  fc.record({
    t: fc.constant('section' as const),
    header: fc.record({
      type: fc.constantFrom(QEMU_VM_SECTION_PART, QEMU_VM_SECTION_END),
      sectionId: u32,
    }),
    payload: bytes(64),
  }),
);

const commandArb: fc.Arbitrary<Frame> = fc
  .oneof(
    fc.record({ cmd: fc.constant(MIG_CMD_OPEN_RETURN_PATH), data: fixed(0) }),
    fc.record({ cmd: fc.constant(MIG_CMD_PING), data: fixed(4) }),
    fc.record({ cmd: fc.constant(MIG_CMD_SWITCHOVER_START), data: fixed(0) }),
    fc.record({ cmd: fc.constant(MIG_CMD_PACKAGED), data: fixed(4) }),
    fc.record({ cmd: fc.constant(MIG_CMD_POSTCOPY_ADVISE), data: fc.oneof(fixed(0), fixed(16)) }),
    fc.record({ cmd: fc.constant(MIG_CMD_POSTCOPY_RAM_DISCARD), data: bytes(40) }),
    fc.record({ cmd: fc.constant(MIG_CMD_RECV_BITMAP), data: bytes(40) }),
  )
  .map(({ cmd, data }) => ({ t: 'command' as const, cmd, data }));

const streamArb: fc.Arbitrary<Stream> = fc.record({
  config: configArb,
  frames: fc.array(fc.oneof(sectionArb, commandArb), { maxLength: 12 }),
  vmdesc: fc.option(fc.string({ maxLength: 80 }), { nil: null }),
});

const chunkSizes = fc.array(fc.integer({ min: 1, max: 48 }), { minLength: 1, maxLength: 6 });

function readerOf(b: Uint8Array): QEMUFileReader {
  const r = new QEMUFileReader();
  r.push(b);
  r.end();
  return r;
}

function normalize(s: Stream): unknown {
  return JSON.parse(
    JSON.stringify(s, (_k, v: unknown) =>
      v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v,
    ),
  );
}

test('property: random frame sequences round-trip under random chunking', async () => {
  await fc.assert(
    fc.asyncProperty(streamArb, chunkSizes, async (s, sizes) => {
      const b = await encode((w) => putStream(w, s));
      const r = new QEMUFileReader();
      const [decoded] = await Promise.all([readStream(r), feedInChunks(r, b, sizes)]);
      assert.deepEqual(normalize(decoded), normalize(s));
      assert.equal(r.offset, b.length);
    }),
    { numRuns: 200 },
  );
});

/** Runs `fn` and reports the largest Buffer.allocUnsafe() it made. */
async function largestAllocation(fn: () => Promise<unknown>): Promise<number> {
  const descriptor = Object.getOwnPropertyDescriptor(Buffer, 'allocUnsafe')!;
  const original = Buffer.allocUnsafe.bind(Buffer);
  let largest = 0;
  Buffer.allocUnsafe = (n: number) => {
    largest = Math.max(largest, n);
    return original(n);
  };
  try {
    await fn();
  } finally {
    Object.defineProperty(Buffer, 'allocUnsafe', descriptor);
  }
  return largest;
}

async function decodeGarbage(b: Uint8Array): Promise<void> {
  try {
    await readStream(readerOf(b));
  } catch (err) {
    if (!(err instanceof StreamError)) throw err;
  }
}

test('property: garbage only ever yields a StreamError, within the caps', async () => {
  const garbage = fc.oneof(
    fc.uint8Array({ maxLength: 512 }),
    // A valid prefix then random bytes, so decoding gets past the header.
    fc
      .tuple(fc.uint8Array({ maxLength: 512 }), fc.boolean())
      .map(([tail, caps]) =>
        Buffer.concat([
          Buffer.from(caps ? '5145564d000000030700000001' : '5145564d00000003', 'hex'),
          tail,
        ]),
      ),
    // A valid stream with bytes flipped.
    fc
      .tuple(
        streamArb,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 4 }),
      )
      .chain(([s, flips]) =>
        fc.constant(
          encode((w) => putStream(w, s)).then((b) => {
            for (const [at, x] of flips) if (b.length > 0) b[at % b.length]! ^= x;
            return b;
          }),
        ),
      ),
  );
  await fc.assert(
    fc.asyncProperty(garbage, async (g) => {
      const b = g instanceof Promise ? await g : g;
      const largest = await largestAllocation(() => decodeGarbage(b));
      assert.ok(largest <= VMDESC_CAP, `allocated ${largest} bytes`);
    }),
    { numRuns: 400 },
  );
});

test('property: truncation at every offset fails naming that offset', async () => {
  await fc.assert(
    fc.asyncProperty(streamArb, async (s) => {
      const b = await encode((w) => putStream(w, s));
      // Cutting right after EOF leaves a valid stream without vmdesc, which is tolerated.
      const eofEnd = b.length - (s.vmdesc === null ? 0 : 5 + Buffer.byteLength(s.vmdesc));
      for (let k = 0; k < b.length; k++) {
        const r = readerOf(b.subarray(0, k));
        if (k === eofEnd) {
          assert.equal((await readStream(r)).vmdesc, null);
          continue;
        }
        await assert.rejects(readStream(r), (e: unknown) => {
          assert.ok(e instanceof StreamError, String(e));
          assert.equal(e.offset, k);
          assert.match(e.message, new RegExp(`^unexpected end of stream at offset ${k} while`));
          return true;
        });
      }
    }),
    { numRuns: 25 },
  );
});
