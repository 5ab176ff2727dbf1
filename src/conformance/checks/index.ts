import type { ConformanceCheck } from '../check.ts';
import { basicChecks } from './basics.ts';
import { dmaLoggingChecks } from './dma-logging.ts';
import { resumingChecks } from './resuming.ts';
import { savingChecks } from './saving.ts';
import { sessionChecks } from './sessions.ts';
import { transitionChecks } from './transitions.ts';

/** The checklist, in the order it is run and printed. */
export const ALL_CHECKS: readonly ConformanceCheck[] = [
  ...basicChecks,
  ...transitionChecks,
  ...sessionChecks,
  ...savingChecks,
  ...resumingChecks,
  ...dmaLoggingChecks,
];
