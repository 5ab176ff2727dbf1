/**
 * Test helper: a toy device with iterative state, registered like VFIO ("toy", version 1),
 * that logs every hook the core calls on either side. Its payloads are tagged u32 records:
 *
 *   1 SETUP                 (START)
 *   2 ITER n                (PART; n = 1, 2, ...)
 *   5 INIT_DATA_SENT        (PART, instead of ITER once `sendInitDataSent()` was called)
 *   3 COMPLETE              (END)
 *   4 STATE len bytes       (FULL)
 *
 * The destination approves the switchover on INIT_DATA_SENT when it was asked to count it.
 */
import type {
  LoadContext,
  PendingSizes,
  SaveContext,
  SaveVMHandlers,
  SaveVMRegistry,
} from '../../src/migration/index.ts';
import type { QEMUFileReader, QEMUFileWriter } from '../../src/migration/stream/index.ts';

export const TOY_IDSTR = 'toy';
export const TAG_SETUP = 1;
export const TAG_ITER = 2;
export const TAG_COMPLETE = 3;
export const TAG_STATE = 4;
export const TAG_INIT_DATA_SENT = 5;
export const TOY_STATE = Buffer.from('toy device configuration');

export interface ToyOptions {
  /** The source reports 1 GiB pending until this many PARTs were sent (default 0). */
  iterations?: number;
  /** Destination: count this entry for switchover-ack. */
  ackNeeded?: boolean;
}

export class ToyEntry implements SaveVMHandlers {
  readonly log: string[] = [];
  /** Destination: the iteration numbers received. */
  readonly received: number[] = [];
  readonly #iterations: number;
  readonly #ackNeeded: boolean;
  #sent = 0;
  #initDataPending = false;
  #ctx: LoadContext | null = null;

  constructor(opts: ToyOptions = {}) {
    this.#iterations = opts.iterations ?? 0;
    this.#ackNeeded = opts.ackNeeded ?? false;
  }

  /** The next PART carries INIT_DATA_SENT (VFIO's DEV_INIT_DATA_SENT). */
  sendInitDataSent(): void {
    this.#initDataPending = true;
  }

  savePrepare(ctx: SaveContext): void {
    this.log.push(`prepare running=${ctx.guestRunning()}`);
    this.#sent = 0;
  }

  saveSetup(f: QEMUFileWriter): Promise<void> {
    this.log.push('setup');
    f.putBe32(TAG_SETUP);
    return Promise.resolve();
  }

  saveLiveIterate(f: QEMUFileWriter): Promise<boolean> {
    if (this.#initDataPending) {
      this.#initDataPending = false;
      this.log.push('init-data-sent');
      f.putBe32(TAG_INIT_DATA_SENT);
      return Promise.resolve(false);
    }
    this.#sent++;
    this.log.push(`iterate ${this.#sent}`);
    f.putBe32(TAG_ITER);
    f.putBe32(this.#sent);
    return Promise.resolve(this.#sent >= this.#iterations);
  }

  statePendingEstimate(pending: PendingSizes): void {
    pending.mustPrecopy += Math.max(this.#iterations - this.#sent, 0) * 2 ** 30;
  }

  saveComplete(f: QEMUFileWriter): Promise<void> {
    this.log.push('complete');
    f.putBe32(TAG_COMPLETE);
    return Promise.resolve();
  }

  saveState(f: QEMUFileWriter): Promise<void> {
    this.log.push('state');
    f.putBe32(TAG_STATE);
    f.putBe32(TOY_STATE.length);
    f.putBuffer(TOY_STATE);
    return Promise.resolve();
  }

  saveCleanup(): Promise<void> {
    this.log.push('cleanup');
    return Promise.resolve();
  }

  loadSetup(ctx: LoadContext): Promise<void> {
    this.log.push('load-setup');
    this.#ctx = ctx;
    return Promise.resolve();
  }

  switchoverAckNeeded(): boolean {
    return this.#ackNeeded;
  }

  async loadState(f: QEMUFileReader, versionId: number): Promise<void> {
    const tag = await f.getBe32('toy tag');
    switch (tag) {
      case TAG_SETUP:
        this.log.push(`load setup v${versionId}`);
        return;
      case TAG_ITER: {
        const n = await f.getBe32('toy iteration');
        this.received.push(n);
        this.log.push(`load iterate ${n}`);
        return;
      }
      case TAG_INIT_DATA_SENT:
        this.log.push('load init-data-sent');
        await this.#ctx!.approveSwitchover();
        return;
      case TAG_COMPLETE:
        this.log.push('load complete');
        return;
      case TAG_STATE: {
        const len = await f.getBe32('toy state length');
        const state = await f.getBytes(len, 'toy state', 1024);
        if (!state.equals(TOY_STATE)) throw new Error('toy state differs');
        this.log.push('load state');
        return;
      }
      default:
        throw new Error(`unknown toy tag ${tag}`);
    }
  }

  loadCleanup(): Promise<void> {
    this.log.push('load-cleanup');
    return Promise.resolve();
  }
}

export function registerToy(registry: SaveVMRegistry, toy: ToyEntry): void {
  registry.register(TOY_IDSTR, toy, { instanceId: 'auto', versionId: 1 });
}
