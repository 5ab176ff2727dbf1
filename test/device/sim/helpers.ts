/** Shared helpers for the simulated device tests. */
import assert from 'node:assert/strict';
import { createSimDevice } from '../../../src/device/sim/index.ts';
import type { SimDevice } from '../../../src/device/sim/index.ts';
import type { DataFd } from '../../../src/device/device.ts';
import { flagsName, isVfioError, LEGAL_FLAG_SETS, MigState } from '../../../src/uapi/index.ts';
import type { ErrnoName, MigrationFlags } from '../../../src/uapi/index.ts';

/** Small, fast configurations of every model (activity on, so PRE_COPY has dirty data). */
export const MODEL_SPECS = {
  mtty: 'sim:mtty,ports=2,activity=2000',
  nic: 'sim:nic,state-size=256K,chunk-size=16K,dirty-rate=512K,dma-rate=256K',
  gpu: 'sim:gpu,state-size=1M,chunk-size=64K,dirty-rate=4M,dma-rate=1M',
} as const;
export type ModelName = keyof typeof MODEL_SPECS;
export const MODELS = Object.keys(MODEL_SPECS) as ModelName[];

export function flagsWord(flags: MigrationFlags): string {
  return flagsName(flags).toLowerCase().replaceAll('_', '-').replaceAll('|', '+');
}

/** A device of `model` with `flags`; `extra` (",key=value...") overrides the test defaults. */
export function makeDevice(
  model: ModelName,
  flags: MigrationFlags,
  extra = '',
  id = `${model}0`,
): SimDevice {
  const params = new Map<string, string>();
  const items = `${MODEL_SPECS[model]},flags=${flagsWord(flags)}${extra}`.split(',').slice(1);
  for (const item of items) {
    const [key, value] = item.split('=');
    if (key && value !== undefined) params.set(key, value);
  }
  const spec = [`sim:${model}`, ...[...params].map(([k, v]) => `${k}=${v}`)].join(',');
  return createSimDevice(spec, { id });
}

/** Every model with every legal flag set. */
export function* everyConfig(): Generator<{
  model: ModelName;
  flags: MigrationFlags;
  label: string;
}> {
  for (const model of MODELS) {
    for (const flags of LEGAL_FLAG_SETS)
      yield { model, flags, label: `${model} ${flagsName(flags)}` };
  }
}

/** Asserts that `p` rejects with a VfioError of `code`; returns its message. */
export async function rejectsWith(
  p: Promise<unknown>,
  code: ErrnoName,
  what = '',
): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(isVfioError(err), `${what}: expected VfioError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, `${what}: ${err.message}`);
    return err.message;
  }
  assert.fail(`${what}: expected ${code}, but it succeeded`);
}

/** Brings a fresh device to `state` (ERROR through an injected fault); returns the live fd. */
export async function driveTo(dev: SimDevice, state: MigState): Promise<DataFd | null> {
  if (state === MigState.ERROR) {
    dev.faults.dropToError();
    await rejectsWith(dev.setState(MigState.STOP), 'EIO', 'drop to ERROR');
    assert.equal(dev.state, MigState.ERROR);
    return null;
  }
  const fd = await dev.setState(state);
  if (state === MigState.RESUMING) await fd!.write(await validStream(dev));
  return fd;
}

const streams = new Map<string, Uint8Array>();

/**
 * A complete saved state for a device configured like `dev` (a STOP_COPY of a fresh twin with
 * another seed), so that RESUMING -> STOP can succeed.
 */
export async function validStream(dev: SimDevice): Promise<Uint8Array> {
  const key = `${dev.model.kind}/${await dev.migrationFlags()}`;
  let stream = streams.get(key);
  if (!stream) {
    const twin = makeDevice(dev.model.kind as ModelName, await dev.migrationFlags(), ',seed=77');
    twin.advance(20);
    stream = concat(await drain((await twin.setState(MigState.STOP_COPY))!));
    streams.set(key, stream);
  }
  return stream;
}

/** Reads a saving fd until 0 (STOP_COPY) or ENOMSG (PRE_COPY); returns the bytes. */
export async function drain(fd: DataFd, bufSize = 64 << 10): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const buf = new Uint8Array(bufSize);
  for (;;) {
    let n: number;
    try {
      n = await fd.read(buf);
    } catch (err) {
      if (isVfioError(err, 'ENOMSG')) return out;
      throw err;
    }
    if (n === 0) return out;
    out.push(buf.slice(0, n));
  }
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const total = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * A full live save: PRE_COPY (when supported) with activity between reads, then STOP_COPY to
 * the end. Returns the stream and the source digest taken once stopped.
 */
export async function liveSave(
  src: SimDevice,
  opts: { rounds?: number; readSize?: number; stepMs?: number } = {},
): Promise<{ stream: Uint8Array; digest: string }> {
  const flags = await src.migrationFlags();
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(opts.readSize ?? 32 << 10);
  let fd: DataFd | null;
  if (flags & 4) {
    fd = await src.setState(MigState.PRE_COPY);
    assert.ok(fd, 'PRE_COPY returns a data fd');
    for (let i = 0; i < (opts.rounds ?? 12); i++) {
      src.advance(opts.stepMs ?? 7);
      try {
        const n = await fd.read(buf);
        parts.push(buf.slice(0, n));
      } catch (err) {
        if (!isVfioError(err, 'ENOMSG')) throw err;
      }
    }
    const next = await src.setState(MigState.STOP_COPY);
    assert.equal(next, null, 'PRE_COPY -> STOP_COPY keeps the same fd');
  } else {
    src.advance(opts.stepMs ?? 7);
    fd = await src.setState(MigState.STOP_COPY);
    assert.ok(fd, 'STOP -> STOP_COPY returns a data fd');
  }
  parts.push(...(await drain(fd)));
  return { stream: concat(parts), digest: await src.stateDigest() };
}

/** Writes `stream` into a resuming fd in the given chunk sizes (cycled). */
export async function writeChunked(
  fd: DataFd,
  stream: Uint8Array,
  sizes: readonly number[],
): Promise<void> {
  let at = 0;
  for (let i = 0; at < stream.length; i++) {
    const n = Math.min(sizes[i % sizes.length]!, stream.length - at);
    assert.equal(await fd.write(stream.subarray(at, at + n)), n);
    at += n;
  }
}
