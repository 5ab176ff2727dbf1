/**
 * The fault matrix: every fault at every phase where it can happen, with the recovery each one
 * promises (issue 6, "Faults"). A row is data: the faults armed on each process before the
 * migration (x-inject-fault arguments), what the runner does once the source reaches the
 * phase, and the promise it is checked against.
 *
 * Phases are those of spec.ts: setup, pre-copy, switchover-wait (the source paused before
 * switchover, `pause-before-switchover`), stop-and-copy, after-eof (the whole stream out,
 * SHUT not yet back). Multifd rows migrate over multifd channels, with the same promises.
 */
import { FaultPhase } from '../../migration/faults/index.ts';

/** What must hold after the row. */
export const Expect = {
  /** Source failed, its guest as before (running), devices RUNNING; the destination never ran; a retry succeeds. */
  SOURCE_KEEPS: 'source keeps the guest',
  /** As SOURCE_KEEPS, but the source ends cancelled. */
  CANCELLED: 'cancelled, source keeps the guest',
  /** The source is gone before the whole stream went out: the destination failed and never ran. */
  SOURCE_GONE: 'source gone, destination never runs',
  /**
   * The source is gone after the whole stream went out: the destination runs the guest if its
   * SHUT got out first, else it fails and never runs.
   */
  SOURCE_GONE_LATE: 'source gone, destination runs it or never does',
  /**
   * No SHUT after the whole stream and no sign that the destination gave up: the source fails
   * and keeps the guest paused; the destination runs it (if its SHUT got out) or never does.
   */
  IN_DOUBT: 'source paused in doubt, at most the destination runs',
} as const;
export type Expectation = (typeof Expect)[keyof typeof Expect];

/** x-inject-fault arguments. */
export type FaultArgs = Readonly<Record<string, unknown>>;

/** What the runner does once the source reached the row's phase. */
export type RowAction =
  | { readonly kind: 'cancel' }
  | { readonly kind: 'kill-destination' }
  | { readonly kind: 'inject'; readonly on: 'source' | 'destination'; readonly fault: FaultArgs };

export interface FaultRow {
  readonly fault: string;
  readonly phase: FaultPhase;
  readonly expect: Expectation;
  /** Armed before `migrate`. */
  readonly source?: readonly FaultArgs[];
  readonly destination?: readonly FaultArgs[];
  readonly act?: RowAction;
  /** The source guest is paused before the migration (and must be paused after it). */
  readonly sourcePaused?: boolean;
  /** Part of the quick subset (the tests run it). */
  readonly quick?: boolean;
  /**
   * Both sides migrate with the multifd capability and this many channels (the destinations
   * wait with `-incoming defer` until it is set), the retry too.
   */
  readonly multifd?: number;
}

const P = FaultPhase;
const SOURCE_PHASES = [P.SETUP, P.PRE_COPY, P.SWITCHOVER_WAIT, P.STOP_AND_COPY, P.AFTER_EOF];
/** The device every device fault uses (the matrix guest's first device). */
export const FAULT_DEVICE = 'nic0';

const channel = (action: string, more: FaultArgs = {}): FaultArgs => ({
  type: 'channel',
  action,
  ...more,
});
const at = (phase: FaultPhase, action: string, more: FaultArgs = {}): FaultArgs =>
  channel(action, { phase, ...more });
const device = (action: string, more: FaultArgs = {}): FaultArgs => ({
  type: 'device',
  id: FAULT_DEVICE,
  action,
  ...more,
});
const load = (section: string, sectionType: string): FaultArgs => ({
  type: 'load',
  section,
  'section-type': sectionType,
});

/** A channel fault by the source, or by the destination (which cannot see the switchover wait: it acts then). */
function channelRows(action: 'cut' | 'reset', quick: readonly FaultPhase[]): FaultRow[] {
  const rows: FaultRow[] = [];
  for (const phase of SOURCE_PHASES) {
    rows.push({
      fault: `${action} by the source`,
      phase,
      // Its own channel gone after the whole stream: it cannot know whether the SHUT was sent.
      expect: phase === P.AFTER_EOF ? Expect.IN_DOUBT : Expect.SOURCE_KEEPS,
      source: [at(phase, action, { side: 'outgoing' })],
      quick: quick.includes(phase),
    });
  }
  for (const phase of SOURCE_PHASES) {
    const row: FaultRow =
      phase === P.SWITCHOVER_WAIT
        ? {
            fault: `${action} by the destination`,
            phase,
            expect: Expect.SOURCE_KEEPS,
            act: { kind: 'inject', on: 'destination', fault: channel(action, { now: true }) },
          }
        : {
            fault: `${action} by the destination`,
            phase,
            expect: Expect.SOURCE_KEEPS,
            destination: [at(phase, action, { side: 'incoming' })],
          };
    rows.push(row);
  }
  return rows;
}

function killRows(): FaultRow[] {
  const rows: FaultRow[] = [];
  for (const phase of SOURCE_PHASES) {
    rows.push(
      phase === P.SWITCHOVER_WAIT
        ? {
            fault: 'destination killed',
            phase,
            expect: Expect.SOURCE_KEEPS,
            act: { kind: 'kill-destination' },
            quick: true,
          }
        : {
            fault: 'destination killed',
            phase,
            expect: Expect.SOURCE_KEEPS,
            destination: [at(phase, 'kill')],
          },
    );
  }
  for (const phase of SOURCE_PHASES) {
    rows.push({
      fault: 'source killed',
      phase,
      expect: phase === P.AFTER_EOF ? Expect.SOURCE_GONE_LATE : Expect.SOURCE_GONE,
      source: [at(phase, 'kill')],
      quick: phase === P.AFTER_EOF,
    });
  }
  return rows;
}

/** The channels of a multifd row: faults on channel 0 or 1 leave another one going. */
export const MATRIX_MULTIFD_CHANNELS = 2;

const packet = (action: string): FaultArgs => ({ type: 'packet', action, nth: 2 });

/**
 * What keeps a destination-side fault at stop-and-copy from racing the end of the load: the
 * source slows `id` once stopped, so that channel's SYNC (every channel carries one at RAM's
 * END) is still owed when the destination acts, however fast the rest goes. Nothing for
 * pre-copy, which lasts long enough by itself.
 */
function owed(phase: FaultPhase, id: number): FaultArgs[] {
  if (phase !== P.STOP_AND_COPY) return [];
  return [at(phase, 'delay', { side: 'outgoing', channel: id, ms: 50 })];
}

/**
 * Multifd (qemu-migration.md §4): a multifd channel cut or reset by either side while it
 * carries RAM (pre-copy) or device state (stop-and-copy), the destination killed with every
 * channel open, and a device-state packet the destination must refuse.
 */
function multifdRows(): FaultRow[] {
  const m = MATRIX_MULTIFD_CHANNELS;
  const rows: FaultRow[] = [];
  for (const phase of [P.PRE_COPY, P.STOP_AND_COPY]) {
    // Channel 1 in pre-copy, channel 0 (the first to carry a device's state) in stop-and-copy.
    const id = phase === P.PRE_COPY ? 1 : 0;
    rows.push(
      {
        fault: `multifd channel ${id} cut by the source`,
        phase,
        expect: Expect.SOURCE_KEEPS,
        source: [at(phase, 'cut', { side: 'outgoing', channel: id })],
        multifd: m,
      },
      {
        fault: `multifd channel ${id} cut by the destination`,
        phase,
        expect: Expect.SOURCE_KEEPS,
        source: owed(phase, id),
        destination: [at(phase, 'cut', { side: 'incoming', channel: id })],
        multifd: m,
        quick: phase === P.STOP_AND_COPY,
      },
    );
  }
  rows.push(
    {
      fault: 'multifd channel 1 reset by the destination',
      phase: P.STOP_AND_COPY,
      expect: Expect.SOURCE_KEEPS,
      source: owed(P.STOP_AND_COPY, 1),
      destination: [at(P.STOP_AND_COPY, 'reset', { side: 'incoming', channel: 1 })],
      multifd: m,
    },
    ...[P.PRE_COPY, P.STOP_AND_COPY].map((phase): FaultRow => ({
      fault: 'destination killed (multifd)',
      phase,
      expect: Expect.SOURCE_KEEPS,
      source: owed(phase, 1),
      destination: [at(phase, 'kill', { channel: 1 })],
      multifd: m,
    })),
    {
      fault: 'device-state packet sent twice',
      phase: P.STOP_AND_COPY,
      expect: Expect.SOURCE_KEEPS,
      source: [packet('duplicate')],
      multifd: m,
      quick: true,
    },
    {
      fault: 'device-state packet with a bad version',
      phase: P.STOP_AND_COPY,
      expect: Expect.SOURCE_KEEPS,
      source: [packet('bad-version')],
      multifd: m,
    },
  );
  return rows;
}

/** The whole matrix, in table order. */
export function faultMatrix(): FaultRow[] {
  const keeps = Expect.SOURCE_KEEPS;
  return [
    ...channelRows('cut', [P.PRE_COPY, P.AFTER_EOF]),
    ...channelRows('reset', [P.STOP_AND_COPY]),
    {
      fault: 'cut by the source at byte 1000000',
      phase: P.PRE_COPY,
      expect: keeps,
      source: [channel('cut', { bytes: 1_000_000, direction: 'out' })],
    },
    // Stalls: nothing fails by itself, x-stall-timeout is what notices.
    ...[P.SETUP, P.PRE_COPY, P.STOP_AND_COPY].map((phase): FaultRow => ({
      fault: 'stall source to destination',
      phase,
      expect: keeps,
      source: [at(phase, 'stall', { direction: 'out' })],
      quick: phase === P.STOP_AND_COPY,
    })),
    ...[P.PRE_COPY, P.STOP_AND_COPY].map((phase): FaultRow => ({
      fault: 'destination stops reading',
      phase,
      expect: keeps,
      destination: [at(phase, 'stall', { direction: 'in' })],
    })),
    {
      fault: 'destination holds its SHUT',
      phase: P.AFTER_EOF,
      expect: keeps,
      destination: [at(P.AFTER_EOF, 'stall', { direction: 'out' })],
      quick: true,
    },
    {
      fault: 'SHUT lost on the way back',
      phase: P.AFTER_EOF,
      expect: Expect.IN_DOUBT,
      source: [at(P.AFTER_EOF, 'stall', { direction: 'in' })],
      quick: true,
    },
    ...killRows(),
    {
      fault: 'migrate_cancel',
      phase: P.PRE_COPY,
      expect: Expect.CANCELLED,
      act: { kind: 'cancel' },
    },
    {
      fault: 'migrate_cancel',
      phase: P.SWITCHOVER_WAIT,
      expect: Expect.CANCELLED,
      act: { kind: 'cancel' },
    },
    // Devices (the source's nic0 unless said otherwise).
    {
      fault: 'device arc fails (-> PRE_COPY)',
      phase: P.SETUP,
      expect: keeps,
      source: [device('fail-arc', { reaching: 'PRE_COPY' })],
    },
    {
      fault: 'destination device: 2nd arc of a SET fails',
      phase: P.SETUP,
      expect: keeps,
      destination: [device('fail-arc', { arc: 2 })],
    },
    {
      fault: 'device put in ERROR',
      phase: P.PRE_COPY,
      expect: keeps,
      act: { kind: 'inject', on: 'source', fault: device('error') },
      quick: true,
    },
    {
      fault: 'device arc fails into ERROR (-> STOP_COPY)',
      phase: P.STOP_AND_COPY,
      expect: keeps,
      source: [device('fail-arc', { reaching: 'STOP_COPY', 'to-error': true })],
    },
    {
      fault: 'device resuming stream invalid',
      phase: P.PRE_COPY,
      expect: keeps,
      source: [device('corrupt-stream', { offset: 200 })],
      quick: true,
    },
    {
      fault: 'device resuming stream short',
      phase: P.AFTER_EOF,
      expect: keeps,
      source: [device('truncate-stream', { length: 4096 })],
    },
    {
      fault: 'destination device refuses RUNNING',
      phase: P.AFTER_EOF,
      expect: keeps,
      destination: [device('fail-arc', { reaching: 'RUNNING' })],
    },
    // The destination's load of a section.
    {
      fault: "load of 'ram' START fails",
      phase: P.SETUP,
      expect: keeps,
      destination: [load('ram', 'start')],
    },
    {
      fault: "load of 'ram' PART fails",
      phase: P.PRE_COPY,
      expect: keeps,
      destination: [load('ram', 'part')],
      quick: true,
    },
    {
      fault: "load of 'globalstate' FULL fails",
      phase: P.STOP_AND_COPY,
      expect: keeps,
      destination: [load('globalstate', 'full')],
    },
    // A paused guest stays paused.
    {
      fault: 'cut by the source (guest paused)',
      phase: P.PRE_COPY,
      expect: keeps,
      source: [at(P.PRE_COPY, 'cut', { side: 'outgoing' })],
      sourcePaused: true,
      quick: true,
    },
    {
      fault: 'destination killed (guest paused)',
      phase: P.STOP_AND_COPY,
      expect: keeps,
      destination: [at(P.STOP_AND_COPY, 'kill')],
      sourcePaused: true,
    },
    ...multifdRows(),
  ];
}
