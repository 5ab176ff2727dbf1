/**
 * A destination never loads a damaged stream: truncated, reordered and corrupted streams are
 * refused with the errno of vfio-uapi.md §6.3 on write or at RESUMING -> STOP, the session is
 * poisoned after a refused write, and the device never reaches STOP with a wrong digest.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { isVfioError, MigState } from '../../../src/uapi/index.ts';
import type { ErrnoName } from '../../../src/uapi/index.ts';
import type { SimDevice } from '../../../src/device/sim/index.ts';
import { concat, drain, liveSave, makeDevice, rejectsWith } from './helpers.ts';
import type { ModelName } from './helpers.ts';

/** Splits a record stream at record boundaries (`le64 record_size` + 16-byte header). */
function records(stream: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < stream.length) {
    const size = Number(new DataView(stream.buffer, stream.byteOffset + at).getBigUint64(0, true));
    out.push(stream.slice(at, at + 16 + size));
    at += 16 + size;
  }
  return out;
}

/** Re-numbers records 0.. and recomputes their crc: a well-framed stream with new content. */
function rebuild(recs: readonly Uint8Array[]): Uint8Array {
  return concat(
    recs.map((r, i) => {
      const copy = r.slice();
      const dv = new DataView(copy.buffer);
      dv.setUint32(16, i, true);
      dv.setUint32(copy.length - 4, crc32(copy.subarray(0, copy.length - 4)), true);
      return copy;
    }),
  );
}

function record(tag: number, flags: number, body: Uint8Array): Uint8Array {
  const r = new Uint8Array(16 + 4 + body.length + 4);
  const dv = new DataView(r.buffer);
  dv.setBigUint64(0, BigInt(r.length - 16), true);
  dv.setUint32(8, flags, true);
  dv.setUint32(12, tag, true);
  r.set(body, 20);
  return r;
}

/**
 * Feeds `stream` to a fresh device in RESUMING and then asks for STOP. Returns the errno of
 * the first refusal (on write or at STOP), or null when the device reached STOP.
 */
async function load(
  dst: SimDevice,
  stream: Uint8Array,
  chunk = 3000,
): Promise<{ errno: ErrnoName | null; on: 'write' | 'stop' | null }> {
  const fd = (await dst.setState(MigState.RESUMING))!;
  let writeErr: ErrnoName | null = null;
  for (let at = 0; at < stream.length; at += chunk) {
    try {
      await fd.write(stream.subarray(at, at + chunk));
    } catch (err) {
      assert.ok(isVfioError(err), String(err));
      writeErr = err.code;
      break;
    }
  }
  try {
    await dst.setState(MigState.STOP);
  } catch (err) {
    assert.ok(isVfioError(err, 'EINVAL'), `RESUMING -> STOP fails with EINVAL, got ${String(err)}`);
    assert.equal(dst.state, MigState.RESUMING, 'a refused load stays in RESUMING');
    return { errno: writeErr ?? 'EINVAL', on: writeErr ? 'write' : 'stop' };
  }
  assert.equal(writeErr, null, 'a refused write must also fail RESUMING -> STOP');
  return { errno: null, on: null };
}

async function saved(
  model: ModelName,
): Promise<{ stream: Uint8Array; digest: string; src: SimDevice }> {
  const src = makeDevice(model, 7, ',seed=11');
  src.advance(25);
  const { stream, digest } = await liveSave(src, { rounds: 10, readSize: 20_000 });
  return { stream, digest, src };
}

for (const model of ['nic', 'gpu'] as const) {
  test(`${model}: truncated streams are refused at RESUMING -> STOP`, async () => {
    const { stream } = await saved(model);
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: stream.length - 1 }), async (cut) => {
        const r = await load(makeDevice(model, 7, ',seed=5'), stream.subarray(0, cut));
        assert.deepEqual(r, { errno: 'EINVAL', on: 'stop' });
      }),
      { numRuns: 40, seed: 1 },
    );
  });

  test(`${model}: a flipped byte anywhere is refused, never loaded`, async () => {
    const { stream } = await saved(model);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: stream.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        async (at, xor) => {
          const bad = stream.slice();
          bad[at]! ^= xor;
          const r = await load(makeDevice(model, 7, ',seed=5'), bad);
          assert.notEqual(r.errno, null, `flip at ${at} loaded`);
          assert.ok(['EINVAL', 'ENOMEM', 'EOPNOTSUPP'].includes(r.errno!), r.errno!);
        },
      ),
      { numRuns: 60, seed: 2 },
    );
  });

  test(`${model}: two records swapped are refused by the sequence check`, async () => {
    const { stream } = await saved(model);
    const recs = records(stream);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: recs.length - 1 }),
        fc.integer({ min: 0, max: recs.length - 1 }),
        async (i, j) => {
          fc.pre(i !== j);
          const swapped = recs.slice();
          [swapped[i], swapped[j]] = [swapped[j]!, swapped[i]!];
          const r = await load(makeDevice(model, 7, ',seed=5'), concat(swapped));
          assert.deepEqual(r, { errno: 'EINVAL', on: 'write' });
        },
      ),
      { numRuns: 30, seed: 3 },
    );
  });
}

test('nic: record-level refusals and the poisoned session', async () => {
  const { stream, digest, src } = await saved('nic');
  const recs = records(stream);
  const tagOf = (r: Uint8Array): number => new DataView(r.buffer).getUint32(12, true);
  const fresh = (): SimDevice => makeDevice('nic', 7, ',seed=5');

  // Renumbered well-formed stream loads (the rebuild helper is faithful).
  let dst = fresh();
  assert.deepEqual(await load(dst, rebuild(recs)), { errno: null, on: null });
  await dst.loadConfig(await src.saveConfig());
  assert.equal(await dst.stateDigest(), digest);

  // An unknown optional record is skipped; an unknown mandatory one is EOPNOTSUPP.
  const optional = record(0x77, 1, new Uint8Array(40));
  dst = fresh();
  assert.deepEqual(await load(dst, rebuild([recs[0]!, optional, ...recs.slice(1)])), {
    errno: null,
    on: null,
  });
  const mandatory = record(0x77, 0, new Uint8Array(40));
  assert.deepEqual(await load(fresh(), rebuild([recs[0]!, mandatory, ...recs.slice(1)])), {
    errno: 'EOPNOTSUPP',
    on: 'write',
  });

  // Unknown flag bits, and a record_size beyond the device limit.
  const badFlags = recs[1]!.slice();
  new DataView(badFlags.buffer).setUint32(8, 0x10, true);
  assert.equal(
    (await load(fresh(), rebuild([recs[0]!, badFlags, ...recs.slice(2)]))).errno,
    'EINVAL',
  );
  const huge = recs[1]!.slice(0, 16);
  new DataView(huge.buffer).setBigUint64(0, 64n << 20n, true);
  assert.deepEqual(await load(fresh(), concat([recs[0]!, huge])), { errno: 'ENOMEM', on: 'write' });

  // A dropped image record: the end record's count and the coverage check refuse it.
  const imageAt = recs.findIndex((r) => tagOf(r) === 2);
  assert.equal(
    (await load(fresh(), rebuild(recs.filter((_, i) => i !== imageAt)))).errno,
    'EINVAL',
  );
  // No end record.
  assert.deepEqual(await load(fresh(), rebuild(recs.slice(0, -1))), {
    errno: 'EINVAL',
    on: 'stop',
  });
  // Data after the end record.
  assert.deepEqual(await load(fresh(), concat([stream, new Uint8Array(1)])), {
    errno: 'EINVAL',
    on: 'write',
  });
  // A stream for another model or another state size.
  const gpuStream = (await saved('gpu')).stream;
  assert.deepEqual(await load(fresh(), gpuStream), { errno: 'EINVAL', on: 'write' });
  const bigger = makeDevice('nic', 7, ',state-size=512K');
  assert.deepEqual(await load(bigger, stream), { errno: 'EINVAL', on: 'write' });

  // After a refused write the session is poisoned: ENODEV, STOP refused, only reset leaves.
  dst = fresh();
  const fd = (await dst.setState(MigState.RESUMING))!;
  const bad = stream.slice();
  bad[100]! ^= 1;
  await rejectsWith(fd.write(bad), 'EINVAL', 'corrupt record');
  await rejectsWith(fd.write(stream), 'ENODEV', 'poisoned session');
  await rejectsWith(
    dst.setState(MigState.STOP),
    'EINVAL',
    'RESUMING -> STOP after a refused write',
  );
  assert.equal(await dst.getState(), MigState.RESUMING);
  await dst.reset();
  assert.equal(await dst.getState(), MigState.RUNNING);
});

test('mtty: resume errors of the sample, plus plausibility of port records', async () => {
  const src = makeDevice('mtty', 7, ',seed=3');
  src.advance(500);
  const stream = concat(await drain((await src.setState(MigState.STOP_COPY))!));
  assert.equal(stream.length, 24 + 2 * 36);
  const fresh = (): SimDevice => makeDevice('mtty', 7);

  assert.deepEqual(await load(fresh(), stream, 7), { errno: null, on: null });
  // Too many bytes: ENOMEM; too few: EINVAL at RESUMING -> STOP.
  assert.deepEqual(await load(fresh(), concat([stream, new Uint8Array(1)]), 1000), {
    errno: 'ENOMEM',
    on: 'write',
  });
  assert.deepEqual(await load(fresh(), stream.subarray(0, 90)), { errno: 'EINVAL', on: 'stop' });
  // Header mismatch (magic, version, port count, flags): EFAULT, the sample's quirk.
  for (const at of [0, 7, 8, 12, 16, 20]) {
    const bad = stream.slice();
    bad[at]! ^= 0x01;
    assert.deepEqual(
      await load(fresh(), bad, 5),
      { errno: 'EFAULT', on: 'write' },
      `header byte ${at}`,
    );
  }
  const threePorts = makeDevice('mtty', 7, ',ports=3');
  assert.deepEqual(await load(threePorts, stream), { errno: 'EFAULT', on: 'write' });
  // Implausible port fields are refused at RESUMING -> STOP.
  const portField = (port: number, off: number): number => 24 + port * 36 + off;
  for (const [off, value] of [
    [24, 16], // head out of range
    [25, 200], // tail out of range
    [26, 17], // count > 16
    [27, 2], // dlab not a boolean
    [28, 9], // overrun not a boolean
    [29, 1], // padding
    [33, 7], // max_fifo_size
    [34, 3], // trigger level
    [35, 1], // padding
  ] as const) {
    const bad = stream.slice();
    bad[portField(1, off)] = value;
    assert.deepEqual(
      await load(fresh(), bad),
      { errno: 'EINVAL', on: 'stop' },
      `port field ${off}`,
    );
  }
  // What still slips through, as documented: FIFO contents and the scratch register.
  const slip = stream.slice();
  slip[portField(0, 8)]! ^= 0xff;
  slip[portField(0, 7)]! ^= 0xff;
  assert.deepEqual(await load(fresh(), slip), { errno: null, on: null });
});
