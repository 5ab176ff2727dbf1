/**
 * The driver core shared by every simulated device: the state mutex, the §4.4 driver loop over
 * `getNextState`, the one data session, reset/close, MIG_DATA_SIZE, DMA logging, the emulated
 * config space, activity over simulated time, and fault injection. Models (mtty, nic, gpu)
 * supply only their state, streams and activity (model.ts).
 */
import { createHash } from 'node:crypto';
import type { DataFd, DmaLogging, DmaMemory, VfioMigrationDevice } from '../device.ts';
import {
  arcDataEffect,
  fail,
  flagsName,
  getNextState,
  isRunningState,
  MigState,
  spinsOnUnfixedKernel,
  stateName,
} from '../../uapi/index.ts';
import type { IovaRange, MigrationFlags } from '../../uapi/index.ts';
import { PciConfigSpace } from './config-space.ts';
import { SimDataFd } from './data-fd.ts';
import { DmaEngine } from './dma.ts';
import type { P2pLog, P2pPeer, P2pReceivedCounter } from './p2p.ts';
import { DEFAULT_DMA_LOG_LIMITS, DmaDirtyLog } from './dma-log.ts';
import type { DmaLogLimits } from './dma-log.ts';
import { SimFaults } from './faults.ts';
import type { ResumingStream, SavingStream, SimModel } from './model.ts';
import { StateMutex } from './mutex.ts';

export interface SimDeviceOptions {
  id: string;
  model: SimModel;
  /** One of the four legal flag sets. */
  flags: MigrationFlags;
  /** false: every migration feature answers ENOTTY (a device without migration ops). */
  migratable: boolean;
  /** `estimate`: MIG_DATA_SIZE is what a STOP_COPY now would still produce; `full`: the whole state. */
  dataSize: 'estimate' | 'full';
  seed: number;
  logLimits?: DmaLogLimits;
  /** Guest memory for the device's DMA; a private buffer until one is attached. */
  memory?: DmaMemory;
  /** Run activity from wall time every `autoRunMs` ms (timer is unref'ed). */
  autoRunMs?: number;
}

type Session =
  | { kind: 'saving'; fd: SimDataFd; stream: SavingStream }
  | { kind: 'resuming'; fd: SimDataFd; stream: ResumingStream };

export class SimDevice implements VfioMigrationDevice, P2pPeer {
  readonly id: string;
  readonly model: SimModel;
  readonly faults = new SimFaults();
  readonly config: PciConfigSpace;
  readonly dmaLogging: DmaLogging;
  readonly #flags: MigrationFlags;
  readonly #migratable: boolean;
  readonly #dataSize: 'estimate' | 'full';
  readonly #mutex = new StateMutex();
  readonly #log: DmaDirtyLog;
  readonly #dma: DmaEngine;
  #state: MigState = MigState.RUNNING;
  #session: Session | null = null;
  #closed = false;
  #timer: NodeJS.Timeout | null = null;
  /** Simulated milliseconds of activity so far (running states only). */
  #activeMs = 0;
  /** Sequence numbers of test-driven P2P writes by a model without a P2P window. */
  #looseP2pSeq = 0;

  constructor(opts: SimDeviceOptions) {
    this.id = opts.id;
    this.model = opts.model;
    this.#flags = opts.flags;
    this.#migratable = opts.migratable;
    this.#dataSize = opts.dataSize;
    this.config = new PciConfigSpace(opts.model.pciIds);
    this.#log = new DmaDirtyLog(opts.logLimits ?? DEFAULT_DMA_LOG_LIMITS);
    this.#dma = new DmaEngine(opts.seed, this.#log, opts.id);
    if (opts.memory) this.#dma.attach(opts.memory);
    this.dmaLogging = new SimDmaLogging(this, this.#log);
    if (opts.autoRunMs !== undefined && opts.autoRunMs > 0) this.startAutoRun(opts.autoRunMs);
  }

  // ---- VfioMigrationDevice -----------------------------------------------------------------

  migrationFlags(): Promise<MigrationFlags> {
    return this.#op('MIGRATION', () => this.#flags);
  }

  getState(): Promise<MigState> {
    return this.#op('MIG_DEVICE_STATE', () => this.#state);
  }

  /** SET MIG_DEVICE_STATE: the driver loop of vfio-uapi.md §4.4, under the state mutex. */
  async setState(target: number): Promise<DataFd | null> {
    this.#checkMigration('MIG_DEVICE_STATE');
    const unlock = await this.#mutex.lock();
    try {
      this.#checkMigration('MIG_DEVICE_STATE');
      if (
        this.faults.hangsOnBlockedArc &&
        target !== this.#state &&
        spinsOnUnfixedKernel(this.#state, target as MigState, this.#flags)
      ) {
        // The unfixed kernel spins in vfio_mig_get_next_state() holding state_mutex (§4.3).
        await new Promise<never>(() => {});
      }
      let fd: SimDataFd | null = null;
      let arc = 0;
      while (this.#state !== target) {
        const next = getNextState(this.#state, target, this.#flags);
        fd = this.#runArc(this.#state, next, ++arc);
        this.#state = next;
        if (fd && next !== target) {
          // Cannot happen with the kernel table: fd-opening arcs are always last (§3).
          this.#endSession();
          fail('EINVAL', `arc to ${stateName(next)} opened a data fd before the end of the path`);
        }
      }
      return fd;
    } finally {
      this.faults.endSet();
      unlock();
    }
  }

  stopCopySize(): Promise<number> {
    return this.#op('MIG_DATA_SIZE', () => {
      const s = this.#session;
      if (this.#dataSize === 'full' || s?.kind !== 'saving') return this.model.fullStateBytes();
      return s.stream.remainingBytes();
    });
  }

  /** VFIO_DEVICE_RESET; deferred until an in-progress SET unlocks (§8). */
  reset(): Promise<void> {
    return Promise.resolve().then(() => {
      this.#checkOpen('RESET');
      this.#mutex.runNowOrOnUnlock(() => this.#applyReset());
    });
  }

  saveConfig(): Promise<Uint8Array> {
    return Promise.resolve().then(() => {
      this.#checkOpen('config save');
      return this.config.save();
    });
  }

  loadConfig(blob: Uint8Array): Promise<void> {
    return Promise.resolve().then(() => {
      this.#checkOpen('config load');
      this.config.load(blob);
    });
  }

  /** SHA-256 hex of the internal state and config space (not session buffers). */
  stateDigest(): Promise<string> {
    return Promise.resolve().then(() => this.digestSync());
  }

  close(): Promise<void> {
    return Promise.resolve().then(() => {
      if (this.#closed) return;
      this.stopAutoRun();
      this.#endSession();
      this.#log.stop();
      this.#dma.release();
      this.#closed = true;
    });
  }

  // ---- simulation API ----------------------------------------------------------------------

  /** The current state without going through the (async, ENOTTY-checked) interface. */
  get state(): MigState {
    return this.#state;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Simulated milliseconds the device has spent working (running states). */
  get activeMs(): number {
    return this.#activeMs;
  }

  digestSync(): string {
    const hash = createHash('sha256');
    this.model.digest(hash);
    hash.update(this.config.bytes);
    return hash.digest('hex');
  }

  /**
   * Runs device activity for `ms` of simulated time: internal state changes and DMA at the
   * configured rates in RUNNING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P; nothing otherwise.
   */
  advance(ms: number): void {
    if (!(ms > 0) || this.#closed || !isRunningState(this.#state)) return;
    this.#activeMs += ms;
    this.model.run(ms, this.#state, this.#dma);
  }

  /** Calls `advance` with the wall time elapsed, every `intervalMs` (unref'ed timer). */
  startAutoRun(intervalMs = 10): void {
    this.stopAutoRun();
    let last = performance.now();
    this.#timer = setInterval(() => {
      const now = performance.now();
      this.advance(now - last);
      last = now;
    }, intervalMs);
    this.#timer.unref();
  }

  stopAutoRun(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Where the device's DMA lands from now on (guest memory seen through the IOMMU). */
  attachMemory(memory: DmaMemory): void {
    this.#dma.attach(memory);
  }

  get dmaMemory(): DmaMemory {
    return this.#dma.memory;
  }

  /** Total bytes the device wrote by DMA. */
  get dmaBytesWritten(): number {
    return this.#dma.bytesWritten;
  }

  /** Makes `peer` a target of this device's P2P activity (p2p.ts). */
  connectPeer(peer: P2pPeer): void {
    this.#dma.connectPeer(peer);
  }

  /** `peer` is gone (unplugged): no more P2P writes to it. */
  disconnectPeer(peer: P2pPeer): void {
    this.#dma.disconnectPeer(peer);
  }

  /** Whether peers can write into this device (its model has a P2P window). */
  get hasP2pWindow(): boolean {
    return this.model.p2p !== undefined;
  }

  /**
   * The device initiates a peer-to-peer write into `peer`: refused (Error) in the
   * P2P-quiesced states, STOP*, RESUMING and ERROR (vfio-uapi.md §2). True when the peer took
   * it. The sequence number comes from the device's P2P window when it has one.
   */
  initiatePeerWrite(peer: P2pPeer, offset: number, data: Uint8Array): boolean {
    const seq = this.model.p2p?.nextTxSeq() ?? this.#looseP2pSeq++;
    return this.#dma.peerWrite(this.#state, peer, seq, offset, data);
  }

  /**
   * `P2pPeer`: a peer's write into this device's P2P window. Taken into the state while the
   * device runs — a P2P-quiesced device still answers peer writes, it only stops initiating
   * them — and lost in STOP*, RESUMING, ERROR, after close, or without a window.
   */
  p2pWrite(from: string, seq: number, offset: number, data: Uint8Array): boolean {
    const state = this.#state;
    const port = this.model.p2p;
    const accepted =
      !this.#closed &&
      isRunningState(state) &&
      port !== undefined &&
      port.accept(from, seq, offset, data);
    this.#dma.p2pLog.recordReceived({
      seq,
      from,
      to: this.id,
      offset,
      length: data.length,
      state,
      accepted,
    });
    return accepted;
  }

  /** Every P2P transaction this device initiated or received. */
  get p2pLog(): P2pLog {
    return this.#dma.p2pLog;
  }

  /** What the device's state says it received, per initiator (empty without a P2P window). */
  p2pReceivedCounters(): P2pReceivedCounter[] {
    return this.model.p2p?.received() ?? [];
  }

  /** Transactions the device's state says it initiated (0 without a P2P window). */
  get p2pTxCount(): number {
    return this.model.p2p?.txCount ?? this.#looseP2pSeq;
  }

  /** A guest write into the emulated config space (header, then MSI-X table at 256). */
  configWrite(offset: number, bytes: Uint8Array): void {
    this.#checkOpen('config write');
    this.config.write(offset, bytes);
  }

  configRead(offset: number, length: number): Uint8Array {
    return this.config.read(offset, length);
  }

  /** The DMA dirty tracker (granule, tracked ranges), for tests and statistics. */
  get dirtyLog(): DmaDirtyLog {
    return this.#log;
  }

  describe(): string {
    return `${this.id} (sim:${this.model.kind}, ${flagsName(this.#flags)}, ${stateName(this.#state)})`;
  }

  // ---- internals ---------------------------------------------------------------------------

  /** One primitive arc. Throws before changing anything when it fails (or drops to ERROR). */
  #runArc(from: MigState, to: MigState, arc: number): SimDataFd | null {
    const fault = this.faults.takeArcFault(arc, to);
    if (fault) {
      if (fault.toError) this.#enterError();
      fail(fault.errno, `injected fault on arc ${arc} (${stateName(from)} -> ${stateName(to)})`);
    }
    switch (arcDataEffect(from, to)) {
      case 'opens-saving':
        return this.#open({
          kind: 'saving',
          stream: this.model.openSaving(to !== MigState.STOP_COPY),
        });
      case 'opens-resuming':
        return this.#open({ kind: 'resuming', stream: this.model.openResuming() });
      case 'closes':
        // RESUMING -> STOP validates; a failure leaves the device (and its fd) in RESUMING.
        if (this.#session?.kind === 'resuming') this.#session.stream.finish();
        this.#endSession();
        return null;
      case 'keeps':
        if (to === MigState.STOP_COPY && this.#session?.kind === 'saving') {
          this.#session.stream.enterStopCopy();
        }
        return null;
      case 'none':
        return null;
    }
  }

  #open(
    s: { kind: 'saving'; stream: SavingStream } | { kind: 'resuming'; stream: ResumingStream },
  ): SimDataFd {
    this.#endSession(); // exactly one live session
    const fd = new SimDataFd(s, { faults: this.faults, currentState: () => this.#state });
    this.#session = { ...s, fd };
    return fd;
  }

  #endSession(): void {
    if (!this.#session) return;
    this.#session.fd.disable();
    this.#session = null;
    this.model.closeSession();
  }

  #enterError(): void {
    this.#endSession();
    this.#state = MigState.ERROR;
  }

  #applyReset(): void {
    this.#endSession();
    this.#log.stop();
    this.#dma.resetRate();
    this.model.powerOn();
    this.config.reset();
    this.#state = MigState.RUNNING;
  }

  #checkOpen(what: string): void {
    if (this.#closed) fail('EBADF', `${what}: device ${this.id} is closed`);
  }

  #checkMigration(what: string): void {
    this.#checkOpen(what);
    if (!this.#migratable) fail('ENOTTY', `${what}: device ${this.id} has no migration support`);
  }

  #op<T>(what: string, f: () => T): Promise<T> {
    return Promise.resolve().then(() => {
      this.#checkMigration(what);
      return f();
    });
  }

  /** For SimDmaLogging. */
  checkLoggingOpen(what: string): void {
    this.#checkOpen(what);
  }
}

/**
 * Features 6/7/8 (vfio-uapi.md §7): the core's checks always run; then the model's mode
 * decides: a real tracker, mtty's succeed-and-do-nothing ops, or no ops at all (ENOTTY).
 */
class SimDmaLogging implements DmaLogging {
  readonly #dev: SimDevice;
  readonly #log: DmaDirtyLog;

  constructor(dev: SimDevice, log: DmaDirtyLog) {
    this.#dev = dev;
    this.#log = log;
  }

  probe(): Promise<boolean> {
    return this.#call(
      'PROBE DMA_LOGGING_START',
      false,
      () => this.#dev.model.dmaLogging !== 'absent',
    );
  }

  start(ranges: readonly IovaRange[], pageSize: bigint): Promise<bigint> {
    return this.#call('DMA_LOGGING_START', true, () => this.#log.start(ranges, pageSize));
  }

  stop(): Promise<void> {
    return this.#call('DMA_LOGGING_STOP', true, () => this.#log.stop());
  }

  report(iova: bigint, length: bigint, pageSize: bigint, bitmap: Uint8Array): Promise<void> {
    return this.#call('DMA_LOGGING_REPORT', true, () =>
      this.#log.report(iova, length, pageSize, bitmap),
    );
  }

  #call<T>(what: string, needsOps: boolean, op: () => T): Promise<T> {
    return Promise.resolve().then(() => {
      this.#dev.checkLoggingOpen(what);
      if (needsOps && this.#dev.model.dmaLogging === 'absent') {
        fail('ENOTTY', `${what}: device ${this.#dev.id} has no DMA logging`);
      }
      return op();
    });
  }
}
