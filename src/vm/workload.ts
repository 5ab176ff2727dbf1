/** The config file's workload, in the shape the vCPU threads take. */
import type { WorkloadConfig } from '../guest/index.ts';
import { MiB } from '../memory/index.ts';
import type { VmConfig } from './config.ts';

export function workloadOf(w: VmConfig['workload']): WorkloadConfig {
  const pattern: WorkloadConfig['pattern'] =
    w.pattern === 'hot'
      ? { kind: 'hot', sizeMiB: (w['hot-size'] ?? 0) / MiB, offsetMiB: w['hot-offset'] / MiB }
      : { kind: w.pattern };
  return { dirtyRateMiBps: w['dirty-rate'], pattern, zeroShare: w['zero-share'], seed: w.seed };
}
