/** Small assertions shared by the checks; each failure says what the device did instead. */
import { isVfioError, stateName } from '../uapi/index.ts';
import type { ErrnoName } from '../uapi/index.ts';
import type { DataFd, VfioMigrationDevice } from '../device/device.ts';
import { CheckFailure } from './check.ts';

function describe(err: unknown): string {
  if (isVfioError(err)) return err.code;
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** Awaits `op` and requires it to fail with `code` (or one of several codes). */
export async function expectErrno(
  op: () => Promise<unknown>,
  code: ErrnoName | readonly ErrnoName[],
  what: string,
): Promise<ErrnoName> {
  const codes: readonly ErrnoName[] = typeof code === 'string' ? [code] : code;
  const want = codes.join(' or ');
  let result: unknown;
  try {
    result = await op();
  } catch (err) {
    if (isVfioError(err) && codes.includes(err.code)) return err.code;
    throw new CheckFailure(`${what}: expected ${want}, got ${describe(err)}`);
  }
  throw new CheckFailure(`${what}: expected ${want}, but it succeeded (${String(result)})`);
}

/** Awaits `op`, turning an unexpected errno into a failure that names the operation. */
export async function expectOk<T>(op: () => Promise<T>, what: string): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw new CheckFailure(`${what}: expected success, got ${describe(err)}`);
  }
}

export async function expectState(
  dev: VfioMigrationDevice,
  want: number,
  what: string,
): Promise<void> {
  const got = await expectOk(() => dev.getState(), 'GET MIG_DEVICE_STATE');
  if (got !== want) {
    throw new CheckFailure(`${what}: device is in ${stateName(got)}, expected ${stateName(want)}`);
  }
}

/** SET that must succeed; returns the fd, if any. */
export async function setOk(dev: VfioMigrationDevice, target: number): Promise<DataFd | null> {
  return expectOk(() => dev.setState(target), `SET ${stateName(target)}`);
}

/** SET that must succeed and return a data fd. */
export async function setWithFd(dev: VfioMigrationDevice, target: number): Promise<DataFd> {
  const fd = await setOk(dev, target);
  if (!fd) throw new CheckFailure(`SET ${stateName(target)}: no data fd returned`);
  return fd;
}

/** Rejects after `ms`: a hung call is a failure, not a hung checker. */
export async function within<T>(ms: number, what: string, op: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CheckFailure(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([op, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
