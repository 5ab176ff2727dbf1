/**
 * Runs the fault matrix between real `vfio-migrate run` processes on loopback. Each row gets a
 * fresh destination; the source is reused for as long as the promise says it survives:
 *
 *   arm the row's faults (x-inject-fault), migrate, act once the source reaches the phase
 *   (cancel, kill the destination, a fault "now"), and let both sides end
 *   check the promise: how each side ended, the source's guest and devices, that the
 *   destination never ran a guest (its RAM stands still)
 *   retry: a new migration from the same source to a fresh paused destination must complete
 *   with equal digests; then `cont` the source for the next row
 *
 * A source that was killed, is in doubt, or broke a promise is replaced before the next row.
 */
import { migrationIsFinished } from '../../migration/index.ts';
import type { VmProcess } from '../vm-process.ts';
import { Expect } from './matrix.ts';
import type { FaultArgs, FaultRow } from './matrix.ts';
import {
  FaultProcesses,
  deviceStates,
  listenUri,
  migrationEnd,
  runState,
  setCapabilities,
  sleep,
  stateDigest,
  untilStatus,
} from './processes.ts';
import type { SideEnd } from './processes.ts';

export interface FaultRunOptions {
  /** Where configs and QMP sockets go. */
  readonly dir: string;
  /** x-stall-timeout on both sides (ms); default 1000. */
  readonly stallTimeoutMs?: number;
  /** Told about each row once it is done. */
  readonly onRow?: (result: RowResult) => void;
}

export interface RowResult {
  readonly row: FaultRow;
  /** Every check of the row's promise held. */
  readonly ok: boolean;
  /** How the two sides ended, e.g. "source failed, destination failed". */
  readonly outcome: string;
  /** The state the promise is about, e.g. "source running, devices RUNNING; destination inmigrate". */
  readonly recovery: string;
  /** The new migration from the same source, e.g. "completed, digests equal". */
  readonly retry: string;
  /** What broke the promise (empty when ok). */
  readonly problems: readonly string[];
  /** Each side's error-desc (null: none, or the process is gone). */
  readonly errors: { readonly source: string | null; readonly destination: string | null };
  readonly ms: number;
}

const CAPS = { events: true, 'return-path': true };
/** Slow enough for the runner to act inside pre-copy. */
const SLOW_BANDWIDTH = 16 << 20;
const SIDE_TIMEOUT_MS = 30_000;

/** The source guest's run state a promise expects after the row. */
function expectedSourceState(row: FaultRow): string {
  if (row.expect === Expect.IN_DOUBT) return 'paused';
  return row.sourcePaused ? 'paused' : 'running';
}

export async function runFaultMatrix(
  rows: readonly FaultRow[],
  opts: FaultRunOptions,
): Promise<RowResult[]> {
  const procs = new FaultProcesses(opts.dir);
  const runner = new RowRunner(procs, opts.stallTimeoutMs ?? 1000);
  const results: RowResult[] = [];
  try {
    for (const row of rows) {
      const r = await runner.run(row);
      results.push(r);
      opts.onRow?.(r);
    }
  } finally {
    await procs.stopAll();
  }
  return results;
}

class RowRunner {
  readonly #procs: FaultProcesses;
  readonly #stallMs: number;
  #src: VmProcess | null = null;

  constructor(procs: FaultProcesses, stallMs: number) {
    this.#procs = procs;
    this.#stallMs = stallMs;
  }

  async run(row: FaultRow): Promise<RowResult> {
    const start = performance.now();
    const problems: string[] = [];
    const check = (ok: boolean, problem: string) => {
      if (!ok) problems.push(problem);
    };
    // The retry's destination starts with the row's: it is needed in most rows.
    const deferred = row.multifd !== undefined;
    const [src, dst, next] = await Promise.all([
      this.#source(),
      this.#procs.destination(false, deferred),
      this.#procs.destination(true, deferred),
    ]);
    let retry = 'not run';
    let outcome = '';
    let recovery = '';
    let errors: RowResult['errors'] = { source: null, destination: null };
    let sourceUsable = false;
    try {
      const uri = await this.#prepare(row, src, dst);
      await src.qmp.execute('migrate', { uri });
      await this.#act(row, src, dst, check);
      const [s, d] = await Promise.all([
        migrationEnd(src, SIDE_TIMEOUT_MS),
        migrationEnd(dst, SIDE_TIMEOUT_MS),
      ]);
      outcome = `source ${s.status}, destination ${d.status}`;
      errors = { source: s.error, destination: d.error };
      recovery = await this.#checkPromise(row, src, dst, s, d, check);
      // In doubt, the guest is the destination's if it runs there; if not, the operator
      // resumes the source, and it must be able to migrate again.
      const dstRuns = d.status === 'completed';
      if (src.exited) {
        retry = 'n/a (source killed)';
      } else if (dstRuns) {
        retry = 'n/a (the destination runs the guest)';
      } else if (problems.length > 0) {
        retry = 'skipped';
      } else {
        const resume = row.sourcePaused === true || row.expect === Expect.IN_DOUBT;
        retry = await this.#retry(row, src, next, resume, check);
        sourceUsable = problems.length === 0;
      }
    } catch (err) {
      problems.push(`the run broke: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      await Promise.all([this.#procs.stop(dst), this.#procs.stop(next)]);
      if (!sourceUsable) {
        await this.#procs.stop(src);
        this.#src = null;
      }
    }
    return {
      row,
      ok: problems.length === 0,
      outcome,
      recovery,
      retry,
      problems,
      errors,
      ms: Math.round(performance.now() - start),
    };
  }

  async #source(): Promise<VmProcess> {
    this.#src ??= await this.#procs.source();
    return this.#src;
  }

  /** Capabilities, parameters and the row's faults on both sides; the URI to migrate to. */
  async #prepare(row: FaultRow, src: VmProcess, dst: VmProcess): Promise<string> {
    const pause = row.phase === 'switchover-wait';
    const slow = row.act !== undefined && row.phase === 'pre-copy';
    await setCapabilities(src, { ...CAPS, 'pause-before-switchover': pause });
    await Promise.all([this.#setMultifd(row, src), this.#setMultifd(row, dst)]);
    const stall = { 'x-stall-timeout': this.#stallMs };
    await src.qmp.execute('migrate-set-parameters', {
      ...stall,
      'max-bandwidth': slow ? SLOW_BANDWIDTH : 0,
    });
    await dst.qmp.execute('migrate-set-parameters', stall);
    const uri = await listenUri(dst);
    if (row.sourcePaused) await src.qmp.execute('stop');
    await Promise.all([injectAll(src, row.source ?? []), injectAll(dst, row.destination ?? [])]);
    return uri;
  }

  /** The row's multifd setting (off, or on with its channels), with the usual capabilities. */
  async #setMultifd(row: FaultRow, vm: VmProcess): Promise<void> {
    await setCapabilities(vm, { ...CAPS, multifd: row.multifd !== undefined });
    if (row.multifd !== undefined) {
      await vm.qmp.execute('migrate-set-parameters', { 'multifd-channels': row.multifd });
    }
  }

  /** What the runner does once the source reached the phase; then it lets the source go on. */
  async #act(
    row: FaultRow,
    src: VmProcess,
    dst: VmProcess,
    check: (ok: boolean, problem: string) => void,
  ): Promise<void> {
    if (row.phase === 'switchover-wait') {
      // A source fault may fire (and end it all) before this poll sees the wait.
      const reached = await untilStatus(
        src,
        (s) => s === 'pre-switchover' || migrationIsFinished(s),
        SIDE_TIMEOUT_MS,
      );
      if (!reached) return;
    } else if (row.act !== undefined) {
      // pre-copy: wait until some RAM went, so the act lands in the middle of it.
      const reached = await untilStatus(
        src,
        (s, i) => s === 'active' && (i.ram?.transferred ?? 0) > 1 << 20,
        SIDE_TIMEOUT_MS,
      );
      check(reached, `the source never reached ${row.phase}`);
      if (!reached) return;
    }
    const act = row.act;
    if (act?.kind === 'cancel') await src.qmp.execute('migrate_cancel');
    else if (act?.kind === 'kill-destination') dst.kill();
    else if (act?.kind === 'inject') await inject(act.on === 'source' ? src : dst, act.fault);
    // Caught in pre-copy; from now on it may converge.
    if (row.phase === 'pre-copy' && act !== undefined && act.kind !== 'cancel') {
      await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 0 });
    }
    if (row.phase !== 'switchover-wait' || src.exited) return;
    // A source fault at the switchover wait fires on its own; give it the time to, then
    // continue the source if it still waits (as its management would).
    const left = await untilStatus(
      src,
      (s) => s !== 'pre-switchover',
      row.act === undefined ? 500 : 3 * this.#stallMs,
    );
    if (!left && !src.exited) {
      await src.qmp.execute('migrate-continue', { state: 'pre-switchover' }).catch(() => undefined);
    }
  }

  /** Checks the row's promise; returns what the recovery looks like. */
  async #checkPromise(
    row: FaultRow,
    src: VmProcess,
    dst: VmProcess,
    s: SideEnd,
    d: SideEnd,
    check: (ok: boolean, problem: string) => void,
  ): Promise<string> {
    const parts: string[] = [];
    const gone = row.expect === Expect.SOURCE_GONE || row.expect === Expect.SOURCE_GONE_LATE;
    if (gone) {
      check(s.status === 'killed', `the source was to be killed, it ended ${s.status}`);
    } else {
      const want = row.expect === Expect.CANCELLED ? 'cancelled' : 'failed';
      check(s.status === want, `the source ended ${s.status}, not ${want}`);
      check(want !== 'failed' || (s.error ?? '') !== '', 'the source reports no error');
      if (!src.exited) {
        const state = await runState(src);
        const devices = await deviceStates(src);
        const expected = expectedSourceState(row);
        check(state === expected, `the source guest is ${state}, not ${expected}`);
        const stuck = devices.filter((x) => !x.endsWith(' RUNNING'));
        check(stuck.length === 0, `source devices not RUNNING: ${stuck.join(', ')}`);
        parts.push(`source ${state}, devices ${stuck.length === 0 ? 'RUNNING' : stuck.join(' ')}`);
      }
    }
    if (dst.exited) {
      parts.push('destination gone');
      return parts.join('; ');
    }
    const dstState = await runState(dst);
    const mayRun = row.expect === Expect.IN_DOUBT || row.expect === Expect.SOURCE_GONE_LATE;
    if (mayRun && d.status === 'completed') {
      check(dstState === 'running', `the destination completed but its guest is ${dstState}`);
      parts.push(`destination ${dstState}`);
      return parts.join('; ');
    }
    check(d.status === 'failed', `the destination ended ${d.status}, not failed`);
    check((d.error ?? '') !== '', 'the destination reports no error');
    const never = dstState === 'inmigrate' || dstState === 'paused';
    check(never, `the destination guest is ${dstState}`);
    // A guest that ran would keep writing its RAM.
    const a = await stateDigest(dst);
    await sleep(150);
    const b = await stateDigest(dst);
    check(a.ram.sha256 === b.ram.sha256, 'the destination RAM changes: its guest runs');
    parts.push(`destination ${dstState}`);
    return parts.join('; ');
  }

  /**
   * A new migration from the same source to `to` (paused), verified by digest; with multifd
   * when the row has it.
   */
  async #retry(
    row: FaultRow,
    src: VmProcess,
    to: VmProcess,
    resumeFirst: boolean,
    check: (ok: boolean, problem: string) => void,
  ): Promise<string> {
    const start = performance.now();
    await src.qmp.execute('x-clear-faults');
    // A guest paused before the failure, or in doubt, is resumed first, as its operator would.
    // (A paused guest's devices are RUNNING after a failure, QEMU's notifier, and a paused
    // migration would not stop them before RAM's final pass: see README, "Faults".)
    if (resumeFirst) await src.qmp.execute('cont');
    await setCapabilities(src, { ...CAPS, 'pause-before-switchover': false });
    await Promise.all([this.#setMultifd(row, src), this.#setMultifd(row, to)]);
    await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 0 });
    await src.qmp.execute('migrate', { uri: await listenUri(to) });
    const [s, d] = await Promise.all([
      migrationEnd(src, SIDE_TIMEOUT_MS),
      migrationEnd(to, SIDE_TIMEOUT_MS),
    ]);
    const ok = s.status === 'completed' && d.status === 'completed';
    check(ok, `the retry ended: source ${s.status}, destination ${d.status} ${s.error ?? ''}`);
    if (!ok) return s.status;
    const [a, b] = [await stateDigest(src), await stateDigest(to)];
    const equal = a.sha256 === b.sha256;
    const differ = [
      ...(a.ram.sha256 === b.ram.sha256 ? [] : ['RAM']),
      ...a.devices.filter((d, i) => d.sha256 !== b.devices[i]?.sha256).map((d) => d.id),
    ];
    check(equal, `the retry: digests differ (${differ.join(', ')})`);
    // The source takes the guest back (running) for the next row.
    await src.qmp.execute('cont');
    const secs = ((performance.now() - start) / 1000).toFixed(1);
    const after = resumeFirst ? ' after cont' : '';
    return `completed${after}, digests ${equal ? 'equal' : 'DIFFER'} (${secs} s)`;
  }
}

async function inject(vm: VmProcess, fault: FaultArgs): Promise<void> {
  await vm.qmp.execute('x-inject-fault', { ...fault });
}

async function injectAll(vm: VmProcess, faults: readonly FaultArgs[]): Promise<void> {
  for (const f of faults) await inject(vm, f);
}
