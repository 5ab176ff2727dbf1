/**
 * The faults armed on one VM's migration, and the seams they act through — the same ones a
 * simulated link would use: the channel factories `createVmMigration` takes
 * (`outgoing.connect`, `incoming.listen`) and the incoming side's `loadObserver`. With nothing
 * armed the factories hand out the transport's own connections untouched; a channel opened
 * while channel faults are armed gets a FaultChannel in front of its socket, and each fault
 * becomes a tripwire on it (a byte count, or the side's phase).
 *
 * A channel fault belongs to the next channel its side opens with its id — the main channel,
 * or multifd channel N — (or the one open now) and fires at most once; one that never fired
 * expires with its channel. The source knows a channel's id when it opens it; the destination
 * only once the channel's first bytes said which it is (`channelIdentified`), so while a
 * channel fault is armed for it every accepted connection gets a proxy, which does nothing
 * until a fault is installed on it. A load fault fires in the incoming migration's load; a
 * packet fault in the source's queue of multifd device-state packets (`deviceStatePackets`);
 * a load-thread fault when the first load thread of an incoming migration starts, holding it
 * and every other load thread of that migration back until its time is up.
 */
import type { MigrationIncomingState } from '../incoming.ts';
import type { MigrationState } from '../migration.ts';
import type { MigrationOptions } from '../options/index.ts';
import type { LoadObserver } from '../savevm/load.ts';
import { MigrationStatus, migrationIsRunning } from '../status.ts';
import {
  QEMU_VM_SECTION_END,
  QEMU_VM_SECTION_FULL,
  QEMU_VM_SECTION_PART,
  QEMU_VM_SECTION_START,
} from '../stream/index.ts';
import type { SectionType } from '../stream/index.ts';
import {
  VFIO_DEVICE_STATE_PACKET_HDR_SIZE,
  VFIO_DEVICE_STATE_PACKET_VER_CURRENT,
} from '../stream/multifd-constants.ts';
import { abortSocket, faultConnection } from '../transport/fault-channel.ts';
import type { FaultChannel } from '../transport/fault-channel.ts';
import { connect as transportConnect, listen as transportListen } from '../transport/index.ts';
import type {
  MigrationChannelId,
  MigrationConnection,
  MigrationListener,
  MigrationUri,
} from '../transport/index.ts';
import { FAULT_PHASES, FaultPhase, checkFaultSpec, describeFault } from './spec.ts';
import type {
  ChannelFaultSpec,
  FaultSide,
  LoadFaultSpec,
  LoadSectionType,
  LoadThreadFaultSpec,
  MigrationFaultSpec,
  PacketFaultSpec,
} from './spec.ts';

export type FaultState = 'armed' | 'fired' | 'expired' | 'cleared';

export interface FaultRecord {
  readonly id: number;
  readonly spec: MigrationFaultSpec;
  readonly description: string;
  state: FaultState;
  /** The side's phase and the channel's byte counts when it fired. */
  firedAt: { phase: FaultPhase | null; bytesIn: number; bytesOut: number } | null;
  /** The channel it was installed on, once one opened. */
  channel: FaultChannel | null;
  /** Load and packet faults: matching sections or packets seen so far. */
  seen: number;
}

export interface FaultPlanOptions {
  /** How `kill` ends the process; default SIGKILL to itself, as a crash would. */
  readonly kill?: () => void;
}

/** The parts of one VM's migration a plan reads its phases from. */
export interface FaultPlanTarget {
  readonly outgoing: Pick<MigrationState, 'status' | 'eofSent'>;
  readonly incoming: Pick<MigrationIncomingState, 'status'>;
  /** Without multifd a destination's one connection is its main channel. */
  readonly options?: Pick<MigrationOptions, 'capability'>;
}

interface OpenChannel {
  readonly conn: MigrationConnection;
  readonly channel: FaultChannel | null;
}

/** History kept for queries; the oldest finished records go first. */
const MAX_RECORDS = 256;

const S = MigrationStatus;

const SECTION_TYPE_NAMES: Readonly<Partial<Record<SectionType, LoadSectionType>>> = {
  [QEMU_VM_SECTION_START]: 'start',
  [QEMU_VM_SECTION_PART]: 'part',
  [QEMU_VM_SECTION_END]: 'end',
  [QEMU_VM_SECTION_FULL]: 'full',
};

/** The incoming phase a section of this type shows (phases only move on). */
function phaseOfSection(type: SectionType): FaultPhase {
  if (type === QEMU_VM_SECTION_PART) return FaultPhase.PRE_COPY;
  if (type === QEMU_VM_SECTION_END || type === QEMU_VM_SECTION_FULL) {
    return FaultPhase.STOP_AND_COPY;
  }
  return FaultPhase.SETUP;
}

function later(a: FaultPhase | null, b: FaultPhase): FaultPhase {
  return a !== null && FAULT_PHASES.indexOf(a) > FAULT_PHASES.indexOf(b) ? a : b;
}

/** The incoming migration is loading (its channels are the ones a fault may act on). */
function incomingRunning(t: FaultPlanTarget): boolean {
  return t.incoming.status === S.SETUP || t.incoming.status === S.ACTIVE;
}

/** Where a channel fault acts: a side and a channel of it. */
function channelKey(side: FaultSide, channel: MigrationChannelId): string {
  return `${side}/${channel}`;
}

function channelOf(spec: ChannelFaultSpec): MigrationChannelId {
  return spec.channel ?? 'main';
}

export class MigrationFaultPlan {
  readonly #kill: () => void;
  readonly #records: FaultRecord[] = [];
  /** The channels open on each side, by channelKey. */
  readonly #open = new Map<string, OpenChannel>();
  /** Incoming connections accepted but not yet identified, with their proxy if they got one. */
  readonly #unidentified = new Map<MigrationConnection, FaultChannel | null>();
  #target: FaultPlanTarget | null = null;
  #incomingPhase: FaultPhase | null = null;
  /** Load threads wait until then (performance.now()), once a load-thread fault fired. */
  #loadThreadsHeldUntil = 0;
  #nextId = 1;

  constructor(opts: FaultPlanOptions = {}) {
    this.#kill = opts.kill ?? (() => process.kill(process.pid, 'SIGKILL'));
  }

  /** Reads the phases from this migration (call once createVmMigration returned). */
  bind(target: FaultPlanTarget): void {
    this.#target = target;
  }

  /** `outgoing.connect` for createVmMigration. */
  readonly connect = async (
    uri: MigrationUri,
    signal: AbortSignal,
    channel: MigrationChannelId = 'main',
  ): Promise<MigrationConnection> =>
    this.#opened('outgoing', channel, await transportConnect(uri, { signal }));

  /** `incoming.listen` for createVmMigration. */
  readonly listen = async (uri: MigrationUri): Promise<MigrationListener> => {
    const l = await transportListen(uri);
    return {
      uri: l.uri,
      accept: async (signal) => this.#accepted(await l.accept(signal)),
      close: () => l.close(),
    };
  };

  /** `incoming.channelIdentified` for createVmMigration. */
  readonly channelIdentified = (conn: MigrationConnection, channel: MigrationChannelId): void => {
    // Without multifd the connection was taken for the main channel when accepted.
    if (!this.#unidentified.has(conn)) return;
    const proxy = this.#unidentified.get(conn) ?? null;
    this.#unidentified.delete(conn);
    if (channel === 'main') this.#incomingPhase = FaultPhase.SETUP;
    this.#install('incoming', channel, conn, proxy);
  };

  /**
   * `outgoing.deviceStatePackets` for createVmMigration: what goes on the multifd channels
   * instead of `packet` — itself, unless a packet fault fires on it.
   */
  readonly deviceStatePackets = (
    idstr: string,
    _instanceId: number,
    packet: Uint8Array,
  ): readonly Uint8Array[] => {
    for (const f of this.#records) {
      if (f.state !== 'armed' || f.spec.type !== 'packet') continue;
      const spec: PacketFaultSpec = f.spec;
      if (spec.section !== undefined && spec.section !== idstr) continue;
      if (++f.seen < (spec.nth ?? 1)) continue;
      this.#markFired(f, 'outgoing');
      if (spec.action === 'duplicate') return [packet, packet];
      const bad = Buffer.from(packet);
      if (bad.length >= VFIO_DEVICE_STATE_PACKET_HDR_SIZE) {
        bad.writeUInt32BE(VFIO_DEVICE_STATE_PACKET_VER_CURRENT + 1, 0);
      }
      return [bad];
    }
    return [packet];
  };

  /** `incoming.loadObserver` for createVmMigration: the destination's phases, load faults. */
  readonly loadObserver: LoadObserver = {
    section: (idstr, instanceId, type) => {
      this.#setIncomingPhase(phaseOfSection(type));
      for (const f of this.#records) {
        if (f.state !== 'armed' || f.spec.type !== 'load') continue;
        if (!loadFaultMatches(f.spec, idstr, instanceId, type)) continue;
        if (++f.seen < (f.spec.nth ?? 1)) continue;
        this.#markFired(f, 'incoming');
        throw new Error(`${f.description} (fault injection)`);
      }
    },
    eof: () => this.#setIncomingPhase(FaultPhase.AFTER_EOF),
    loadThread: (_name, signal) => this.#holdLoadThread(signal),
  };

  /** Where this side's migration is, or null when it does not run. */
  phase(side: FaultSide): FaultPhase | null {
    const t = this.#target;
    if (t === null) return null;
    if (side === 'incoming') return incomingRunning(t) ? this.#incomingPhase : null;
    switch (t.outgoing.status) {
      case S.SETUP:
        return FaultPhase.SETUP;
      case S.ACTIVE:
        return FaultPhase.PRE_COPY;
      case S.PRE_SWITCHOVER:
        return FaultPhase.SWITCHOVER_WAIT;
      case S.DEVICE:
        return t.outgoing.eofSent ? FaultPhase.AFTER_EOF : FaultPhase.STOP_AND_COPY;
      default:
        return null;
    }
  }

  /** Every fault armed so far (the most recent MAX_RECORDS), oldest first. */
  get faults(): readonly FaultRecord[] {
    return this.#records;
  }

  /**
   * Arms a fault; throws saying why one cannot work. A channel fault with `now` acts on the
   * open channel at once (cut, reset and kill also without a fault proxy in front of it).
   */
  arm(spec: MigrationFaultSpec): FaultRecord {
    checkFaultSpec(spec);
    const f: FaultRecord = {
      id: this.#nextId++,
      spec,
      description: describeFault(spec),
      state: 'armed',
      firedAt: null,
      channel: null,
      seen: 0,
    };
    if (spec.type === 'channel') {
      const channel = channelOf(spec);
      const open = this.#liveChannel(spec.side, channel);
      const name =
        channel === 'main'
          ? `${spec.side} migration channel`
          : `${spec.side} multifd channel ${channel}`;
      if ('now' in spec.trigger && open === null) throw new Error(`no ${name} is open`);
      if (open !== null && open.channel === null) {
        if (!('now' in spec.trigger) || spec.action === 'stall' || spec.action === 'delay') {
          throw new Error(
            `the ${name} was opened with no fault armed, so it has no fault ` +
              'proxy: arm byte, phase, stall and delay faults before the migration starts',
          );
        }
        this.#remember(f);
        this.#fireOnSocket(f, spec, open.conn);
        return f;
      }
      this.#remember(f);
      if (open?.channel) this.#installFault(f, open.channel);
      return f;
    }
    this.#remember(f);
    return f;
  }

  /** Disarms every fault that has not fired; returns how many. */
  clear(): number {
    let n = 0;
    for (const f of this.#records) {
      if (f.state !== 'armed') continue;
      f.state = 'cleared';
      n++;
    }
    return n;
  }

  // --- channels -----------------------------------------------------------------------------

  #liveChannel(side: FaultSide, channel: MigrationChannelId): OpenChannel | null {
    const open = this.#open.get(channelKey(side, channel)) ?? null;
    const t = this.#target;
    if (open === null || t === null) return null;
    const live = side === 'outgoing' ? migrationIsRunning(t.outgoing.status) : incomingRunning(t);
    return live ? open : null;
  }

  /** Armed channel faults of `side`, for `channel` (any channel when absent). */
  #armed(side: FaultSide, channel?: MigrationChannelId): FaultRecord[] {
    return this.#records.filter(
      (f) =>
        f.state === 'armed' &&
        f.spec.type === 'channel' &&
        f.spec.side === side &&
        (channel === undefined || channelOf(f.spec) === channel),
    );
  }

  /** The source opened `channel`: a proxy in front of it if faults wait for it. */
  #opened(
    side: FaultSide,
    channel: MigrationChannelId,
    conn: MigrationConnection,
  ): MigrationConnection {
    const wanted = this.#armed(side, channel).some((f) => f.channel === null);
    if (!wanted) {
      this.#install(side, channel, conn, null);
      return conn;
    }
    const { connection, channel: proxy } = faultConnection(conn);
    this.#install(side, channel, connection, proxy);
    return connection;
  }

  /**
   * The destination accepted a connection. Without multifd it is the main channel; with it,
   * which one it is shows later (`channelIdentified`), so it gets a proxy (idle until a fault
   * is installed) if any channel fault may want it.
   */
  #accepted(conn: MigrationConnection): MigrationConnection {
    if (this.#target?.options?.capability('multifd') !== true) {
      this.#incomingPhase = FaultPhase.SETUP;
      return this.#opened('incoming', 'main', conn);
    }
    if (!this.#armed('incoming').some((f) => f.channel === null)) {
      this.#unidentified.set(conn, null);
      return conn;
    }
    const { connection, channel } = faultConnection(conn);
    this.#unidentified.set(connection, channel);
    return connection;
  }

  /** `conn` is `channel` of `side` from now on: the faults waiting for it are installed. */
  #install(
    side: FaultSide,
    channel: MigrationChannelId,
    conn: MigrationConnection,
    proxy: FaultChannel | null,
  ): void {
    const pending: FaultRecord[] = [];
    for (const f of this.#armed(side, channel)) {
      // Installed on an earlier channel that ended without it firing.
      if (f.channel !== null) f.state = 'expired';
      else pending.push(f);
    }
    this.#open.set(channelKey(side, channel), { conn, channel: proxy });
    if (proxy === null) return;
    for (const f of pending) this.#installFault(f, proxy);
  }

  #installFault(f: FaultRecord, channel: FaultChannel): void {
    const spec = f.spec as ChannelFaultSpec;
    f.channel = channel;
    const fire = () => this.#fireOnChannel(f, spec, channel);
    const t = spec.trigger;
    if ('bytes' in t) channel.addTripwire({ direction: t.direction, atByte: t.bytes, fire });
    else if ('phase' in t)
      channel.addTripwire({ ready: () => this.phase(spec.side) === t.phase, fire });
    else fire();
  }

  #fireOnChannel(f: FaultRecord, spec: ChannelFaultSpec, channel: FaultChannel): void {
    if (f.state !== 'armed') return;
    this.#markFired(f, spec.side, channel);
    const both = spec.direction === undefined;
    switch (spec.action) {
      case 'cut':
        return channel.cut();
      case 'reset':
        return channel.reset();
      case 'kill':
        return this.#kill();
      case 'stall':
        if (both || spec.direction === 'in') channel.stall('in', spec.ms);
        if (both || spec.direction === 'out') channel.stall('out', spec.ms);
        return;
      case 'delay':
        if (both || spec.direction === 'in') channel.delay('in', spec.ms!);
        if (both || spec.direction === 'out') channel.delay('out', spec.ms!);
        return;
    }
  }

  /** cut, reset or kill now, on a channel without a proxy. */
  #fireOnSocket(f: FaultRecord, spec: ChannelFaultSpec, conn: MigrationConnection): void {
    this.#markFired(f, spec.side);
    const why = new Error(`${conn.description}: ${spec.action} by fault injection`);
    if (spec.action === 'kill') return this.#kill();
    const socket = conn.socket;
    if (socket !== null) abortSocket(socket, spec.action === 'reset');
    conn.destroy(why);
  }

  #markFired(f: FaultRecord, side: FaultSide, channel: FaultChannel | null = null): void {
    f.state = 'fired';
    f.firedAt = {
      phase: this.phase(side),
      bytesIn: channel?.bytesIn ?? 0,
      bytesOut: channel?.bytesOut ?? 0,
    };
  }

  /** A load thread starts: held back while a load-thread fault holds them (abortable). */
  async #holdLoadThread(signal: AbortSignal): Promise<void> {
    for (const f of this.#records) {
      if (f.state !== 'armed' || f.spec.type !== 'load-thread') continue;
      const spec: LoadThreadFaultSpec = f.spec;
      this.#markFired(f, 'incoming');
      this.#loadThreadsHeldUntil = performance.now() + spec.ms;
      break;
    }
    const ms = this.#loadThreadsHeldUntil - performance.now();
    if (ms <= 0 || signal.aborted) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  #setIncomingPhase(phase: FaultPhase): void {
    const next = later(this.#incomingPhase, phase);
    if (next === this.#incomingPhase) return;
    this.#incomingPhase = next;
    // A phase fault on an incoming channel fires here, before the loader reads on.
    for (const [key, open] of this.#open) {
      if (key.startsWith('incoming/')) open.channel?.poll();
    }
  }

  #remember(f: FaultRecord): void {
    this.#records.push(f);
    while (this.#records.length > MAX_RECORDS) {
      const i = this.#records.findIndex((r) => r.state !== 'armed');
      if (i < 0) break;
      this.#records.splice(i, 1);
    }
  }
}

function loadFaultMatches(
  spec: LoadFaultSpec,
  idstr: string,
  instanceId: number,
  type: SectionType,
): boolean {
  if (spec.section !== idstr || (spec.instance ?? 0) !== instanceId) return false;
  return spec.sectionType === undefined || SECTION_TYPE_NAMES[type] === spec.sectionType;
}
