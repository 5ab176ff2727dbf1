/**
 * Random sequences of SET / GET / read / write / PRECOPY_INFO / pread / close / logging /
 * reset / activity against every simulated model and flag set, each outcome compared with the
 * independent reference of ./model.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { DataFd } from '../../../src/device/device.ts';
import { createSimDevice } from '../../../src/device/sim/index.ts';
import type { SimDevice } from '../../../src/device/sim/index.ts';
import { isVfioError } from '../../../src/uapi/index.ts';
import { ReferenceDevice, stateNameOf } from './model.ts';
import type { RefSession } from './model.ts';

type Op =
  | { op: 'set'; target: number }
  | { op: 'get' }
  | { op: 'read'; fd: number; size: number }
  | { op: 'write'; fd: number; size: number }
  | { op: 'precopyInfo'; fd: number; argsz: number }
  | { op: 'pread'; fd: number }
  | { op: 'close'; fd: number }
  | { op: 'reset' }
  | { op: 'logStart' }
  | { op: 'logStop' }
  | { op: 'logReport' }
  | { op: 'dataSize' }
  | { op: 'advance'; ms: number };

const fdIndex = fc.nat({ max: 7 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ op: fc.constant('set' as const), target: fc.nat({ max: 9 }) }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('get' as const) }) },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('read' as const),
      fd: fdIndex,
      size: fc.integer({ min: 1, max: 300_000 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('write' as const),
      fd: fdIndex,
      size: fc.integer({ min: 1, max: 600_000 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('precopyInfo' as const),
      fd: fdIndex,
      argsz: fc.constantFrom(8, 23, 24, 32),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('pread' as const), fd: fdIndex }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('close' as const), fd: fdIndex }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('reset' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('logStart' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('logStop' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('logReport' as const) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('dataSize' as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('advance' as const),
      ms: fc.integer({ min: 1, max: 200 }),
    }),
  },
);

async function errnoOf(p: Promise<unknown>): Promise<string | null> {
  try {
    await p;
    return null;
  } catch (err) {
    if (isVfioError(err)) return err.code;
    throw err;
  }
}

/** A complete STOP_COPY stream of a twin device: what resuming sessions are fed. */
async function savedStream(spec: string): Promise<Uint8Array> {
  const twin = createSimDevice(spec, { id: 'twin' });
  const fd = (await twin.setState(3))!;
  const parts: Buffer[] = [];
  const buf = new Uint8Array(1 << 20);
  for (let n = await fd.read(buf); n > 0; n = await fd.read(buf))
    parts.push(Buffer.from(buf.subarray(0, n)));
  await twin.close();
  return Buffer.concat(parts);
}

const LOG_RANGE = [{ iova: 0n, length: 1n << 30n }];

async function runSequence(spec: string, stream: Uint8Array, ops: readonly Op[]): Promise<void> {
  const dev: SimDevice = createSimDevice(spec, { id: 'dut' });
  const flags = await dev.migrationFlags();
  const logging = await dev.dmaLogging.probe();
  const ref = new ReferenceDevice(flags, stream.length);
  const fds: DataFd[] = [];
  const sessionOf = new Map<DataFd, RefSession>();
  const trace: string[] = [];
  const at = () => `${spec} after ${trace.join('; ')}`;
  try {
    for (const o of ops) {
      const fd = 'fd' in o ? fds[o.fd % Math.max(fds.length, 1)] : undefined;
      const s = fd && sessionOf.get(fd);
      trace.push(
        `${o.op}${'target' in o ? ` ${stateNameOf(o.target)}` : ''}${'fd' in o ? ` fd${o.fd}` : ''}`,
      );
      switch (o.op) {
        case 'set': {
          const want = ref.set(o.target);
          if (!want.ok) {
            assert.equal(await errnoOf(dev.setState(o.target)), want.errno, at());
          } else {
            const got = await dev.setState(o.target);
            assert.equal(got?.kind ?? null, want.fd, `${at()}: fd of path ${want.path.join('>')}`);
            if (got) {
              fds.push(got);
              sessionOf.set(got, ref.sessions.at(-1)!);
            }
          }
          assert.equal(stateNameOf(await dev.getState()), ref.state, at());
          break;
        }
        case 'get':
          assert.equal(stateNameOf(await dev.getState()), ref.state, at());
          break;
        case 'read': {
          if (!fd || !s) break;
          const want = ref.read(s);
          const buf = new Uint8Array(o.size);
          if (want === 'EBADF' || want === 'ENODEV') {
            assert.equal(await errnoOf(fd.read(buf)), want, at());
            break;
          }
          let n: number | string;
          try {
            n = await fd.read(buf);
          } catch (err) {
            n = isVfioError(err) ? err.code : String(err);
          }
          if (want === 'precopy') {
            assert.ok(
              n === 'ENOMSG' || (typeof n === 'number' && n > 0),
              `${at()}: read gave ${n}`,
            );
          } else {
            assert.ok(typeof n === 'number', `${at()}: STOP_COPY read gave ${n}`);
            if (s.sawEof) assert.equal(n, 0, `${at()}: data after the end`);
            if (n === 0) s.sawEof = true;
          }
          break;
        }
        case 'write': {
          if (!fd || !s) break;
          const want = ref.write(s);
          const chunk = stream.subarray(s.written, s.written + o.size);
          if (want !== 'ok') {
            assert.equal(await errnoOf(fd.write(chunk)), want, at());
          } else if (chunk.length > 0) {
            const n = await fd.write(chunk);
            assert.ok(n > 0 && n <= chunk.length, `${at()}: write accepted ${n}`);
            s.written += n;
          }
          break;
        }
        case 'precopyInfo': {
          if (!fd || !s) break;
          const want = ref.precopyInfo(s, o.argsz);
          if (want !== 'ok') {
            assert.equal(await errnoOf(fd.precopyInfo(o.argsz)), want, at());
            break;
          }
          const info = await fd.precopyInfo(o.argsz, 3);
          assert.equal(info.flags, 3, `${at()}: v1 echoes flags`);
          assert.ok(info.initialBytes <= s.lastInitial, `${at()}: initial_bytes rose`);
          assert.ok(info.initialBytes >= 0 && info.dirtyBytes >= 0, at());
          s.lastInitial = info.initialBytes;
          break;
        }
        case 'pread':
          if (fd && s)
            assert.equal(await errnoOf(fd.pread(new Uint8Array(8), 0)), ref.pread(s), at());
          break;
        case 'close':
          if (fd && s && !s.closed) {
            fd.close();
            s.closed = true;
          }
          break;
        case 'reset':
          await dev.reset();
          ref.reset();
          assert.equal(stateNameOf(await dev.getState()), 'RUNNING', at());
          break;
        case 'logStart':
          if (!logging) break;
          assert.equal(
            await errnoOf(dev.dmaLogging.start(LOG_RANGE, 4096n)),
            ref.logging ? 'EINVAL' : null,
            at(),
          );
          ref.logging = true;
          break;
        case 'logStop':
          if (!logging) break;
          await dev.dmaLogging.stop();
          ref.logging = false;
          break;
        case 'logReport':
          if (!logging) break;
          assert.equal(
            await errnoOf(dev.dmaLogging.report(0n, 1n << 24n, 4096n, new Uint8Array(512))),
            ref.logging ? null : 'EINVAL',
            at(),
          );
          break;
        case 'dataSize': {
          const size = await dev.stopCopySize();
          assert.ok(Number.isSafeInteger(size) && size >= 0, at());
          break;
        }
        case 'advance':
          dev.advance(o.ms);
          break;
      }
      assert.notEqual(stateNameOf(await dev.getState()), 'ERROR', `${at()}: ERROR without a fault`);
    }
  } finally {
    await dev.close();
  }
}

const MODELS = [
  'sim:mtty',
  'sim:nic,state-size=512K,chunk-size=16K',
  'sim:gpu,state-size=1M,chunk-size=16K,dirty-rate=128M',
];
const FLAG_SETS = ['stop-copy', 'stop-copy+p2p', 'stop-copy+pre-copy', 'stop-copy+p2p+pre-copy'];

for (const model of MODELS) {
  test(`${model}: random uAPI call sequences agree with the kernel reference, every flag set`, async () => {
    for (const flags of FLAG_SETS) {
      const spec = `${model},flags=${flags}`;
      const stream = await savedStream(spec);
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 60 }), (ops) =>
          runSequence(spec, stream, ops),
        ),
        { numRuns: 40, seed: 20261126 },
      );
    }
  });
}
