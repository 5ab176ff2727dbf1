/**
 * The fuzz loop every target shares: mutators picked at random from one seed, a case seed per
 * case (printed with every problem, so one case replays alone), and the promises checked on
 * each case — it ends `completed` or `failed` with an error that says something, nothing is
 * thrown past the target, no Buffer larger than the target's cap is allocated, and the RSS
 * stays bounded.
 */
import { seededRandom } from '../../src/conformance/random.ts';
import type { Rng } from './mutators.ts';

export interface FuzzOptions {
  cases: number;
  seconds: number;
  seed: number;
  /** Per case. */
  timeoutMs?: number;
}

export interface CaseOutcome {
  /** `completed`, `failed`, or what else it ended in (a problem). */
  status: string;
  error: string | null;
  /** Bytes of the input. */
  bytes: number;
  /** Promises the target itself found broken (e.g. a guest running after a failed load). */
  problems: string[];
}

export interface FuzzTarget {
  /** The mutators it takes, by name. */
  readonly mutators: readonly string[];
  /** Largest Buffer one case may allocate (every length bounded before allocating). */
  readonly allocationCap?: number;
  runCase(mutator: string, rng: Rng, timeoutMs: number): Promise<CaseOutcome>;
}

export interface FuzzResult {
  cases: number;
  seconds: number;
  completed: number;
  failed: number;
  /** One line per case that broke a promise: a hang, an unclear error, a crash... */
  problems: string[];
  peakRssGrowth: number;
  /** The largest Buffer any case allocated. */
  largestAllocation: number;
  byMutator: Record<string, { cases: number; failed: number }>;
}

type Alloc = (this: void, size: number, ...rest: never[]) => Buffer;
const allocators = Buffer as unknown as Record<string, Alloc>;

/**
 * Records the largest size asked of Buffer's allocators until `stop` (Buffer.concat and the
 * stream reader's getBytes go through them).
 */
function watchAllocations(): { largest: () => number; reset: () => void; stop: () => void } {
  const names = ['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const;
  const saved = names.map((n) => allocators[n]!);
  let largest = 0;
  names.forEach((n, i) => {
    const original = saved[i]!;
    allocators[n] = (size: number, ...rest: never[]) => {
      if (size > largest) largest = size;
      return original(size, ...rest);
    };
  });
  return {
    largest: () => largest,
    reset: () => (largest = 0),
    stop: () => names.forEach((n, i) => (allocators[n] = saved[i]!)),
  };
}

export async function fuzzLoop(target: FuzzTarget, o: FuzzOptions): Promise<FuzzResult> {
  const crashes: string[] = [];
  const onCrash = (err: unknown) =>
    crashes.push(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  const allocations = watchAllocations();
  try {
    const names = target.mutators;
    const rng = seededRandom(o.seed);
    const baseline = process.memoryUsage().rss;
    const result: FuzzResult = {
      cases: 0,
      seconds: 0,
      completed: 0,
      failed: 0,
      problems: [],
      peakRssGrowth: 0,
      largestAllocation: 0,
      byMutator: Object.fromEntries(names.map((n) => [n, { cases: 0, failed: 0 }])),
    };
    const start = performance.now();
    while (result.cases < o.cases && performance.now() - start < o.seconds * 1000) {
      const name = names[Math.floor(rng() * names.length)]!;
      const caseSeed = Math.floor(rng() * 2 ** 32);
      allocations.reset();
      const out = await target.runCase(name, seededRandom(caseSeed), o.timeoutMs ?? 10_000);
      const tag = `case ${result.cases} (${name}, seed ${caseSeed}, ${out.bytes} bytes)`;
      result.cases++;
      result.byMutator[name]!.cases++;
      if (out.status === 'completed') {
        result.completed++;
      } else if (out.status === 'failed') {
        result.failed++;
        result.byMutator[name]!.failed++;
        if (!out.error || out.error.length < 12)
          result.problems.push(`${tag}: unclear error "${out.error}"`);
      } else {
        result.problems.push(`${tag}: ended ${out.status}`);
      }
      for (const p of out.problems) result.problems.push(`${tag}: ${p}`);
      if (crashes.length > 0)
        result.problems.push(`${tag}: uncaught ${crashes.splice(0).join(' | ')}`);
      const largest = allocations.largest();
      result.largestAllocation = Math.max(result.largestAllocation, largest);
      if (target.allocationCap !== undefined && largest > target.allocationCap)
        result.problems.push(`${tag}: allocated ${largest} bytes (cap ${target.allocationCap})`);
      if (result.cases % 50 === 0) {
        result.peakRssGrowth = Math.max(result.peakRssGrowth, process.memoryUsage().rss - baseline);
      }
    }
    result.seconds = (performance.now() - start) / 1000;
    return result;
  } finally {
    allocations.stop();
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
  }
}
