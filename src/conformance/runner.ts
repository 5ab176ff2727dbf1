/** Runs the checklist against devices from a factory: a fresh device per check, bounded time. */
import type { VfioMigrationDevice } from '../device/device.ts';
import { flagsName } from '../uapi/index.ts';
import type { CheckContext, ConformanceCheck, DeviceFactory } from './check.ts';
import { within } from './expect.ts';
import { seededRandom } from './random.ts';

export type CheckStatus = 'pass' | 'fail' | 'skip';

export interface CheckResult {
  id: string;
  title: string;
  spec: string;
  status: CheckStatus;
  /** Why it failed or was skipped. */
  detail?: string;
  ms: number;
}

export interface ConformanceReport {
  device: string;
  flags: string;
  dmaLogging: boolean;
  seed: number;
  results: CheckResult[];
  passed: number;
  failed: number;
  skipped: number;
}

export interface RunOptions {
  /** Run only these check ids. */
  only?: readonly string[];
  seed?: number;
  /** Per check; a check that takes longer fails (a hung device must not hang the checker). */
  timeoutMs?: number;
  onResult?: (r: CheckResult) => void;
}

export async function runConformance(
  checks: readonly ConformanceCheck[],
  factory: DeviceFactory,
  opts: RunOptions = {},
): Promise<ConformanceReport> {
  const seed = opts.seed ?? 1;
  const probe = await factory();
  const flags = await probe.migrationFlags();
  const dmaLogging = await probe.dmaLogging.probe();
  const name = probe.id;
  await probe.close();

  const results: CheckResult[] = [];
  for (const check of checks) {
    if (opts.only && !opts.only.includes(check.id)) continue;
    const result = await runOne(check, factory, flags, dmaLogging, seed, opts.timeoutMs ?? 60_000);
    results.push(result);
    opts.onResult?.(result);
  }
  const count = (s: CheckStatus) => results.filter((r) => r.status === s).length;
  return {
    device: name,
    flags: flagsName(flags),
    dmaLogging,
    seed,
    results,
    passed: count('pass'),
    failed: count('fail'),
    skipped: count('skip'),
  };
}

async function runOne(
  check: ConformanceCheck,
  factory: DeviceFactory,
  flags: number,
  dmaLogging: boolean,
  seed: number,
  timeoutMs: number,
): Promise<CheckResult> {
  const base = { id: check.id, title: check.title, spec: check.spec };
  const skip = check.skip?.(flags, dmaLogging);
  if (skip !== undefined) return { ...base, status: 'skip', detail: skip, ms: 0 };

  const opened: VfioMigrationDevice[] = [];
  const ctx: CheckContext = {
    flags,
    random: seededRandom(seed),
    async device() {
      const dev = await factory();
      opened.push(dev);
      return dev;
    },
  };
  const start = performance.now();
  let detail: string | undefined;
  try {
    await within(timeoutMs, `check ${check.id}`, check.run(ctx));
  } catch (err) {
    detail = err instanceof Error ? err.message : String(err);
  } finally {
    await Promise.allSettled(opened.map((d) => d.close()));
  }
  const ms = Math.round(performance.now() - start);
  return detail === undefined
    ? { ...base, status: 'pass', ms }
    : { ...base, status: 'fail', detail, ms };
}
