/**
 * The dirty-logging side of QEMU's memory listeners (`log_global_start`, `log_global_stop`,
 * `log_sync`): how RAM migration tells every dirty-page tracker to start, stop and report.
 * The vCPU log is built in (KVM's listener); device trackers (VFIO DMA logging, an IOMMU)
 * register here, sit above this layer, and OR what they find into the blocks' migration
 * bitmaps (qemu-migration.md §3.5).
 */
export interface DirtyLogListener {
  /** For errors and traces, e.g. "vfio". */
  readonly name: string;
  /** `log_global_start`: dirty tracking begins (RAM migration setup). Throw to fail it. */
  logGlobalStart?(): Promise<void>;
  /** `log_global_stop`: migration ended or failed. */
  logGlobalStop?(): Promise<void>;
  /**
   * `log_sync`: mark every page written since the last sync dirty in the migration bitmaps.
   * `final` is true for the sync of the stop-and-copy phase (devices are stopped).
   */
  logSync?(final: boolean): Promise<void>;
}

export class DirtyLogListeners {
  readonly #listeners: DirtyLogListener[] = [];
  #started = false;

  get started(): boolean {
    return this.#started;
  }

  /** Registers a tracker; returns the function that removes it. */
  add(listener: DirtyLogListener): () => void {
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /**
   * `memory_global_dirty_log_start`. If a tracker fails, the ones already started are stopped
   * again and the error is rethrown, naming the tracker.
   */
  async start(): Promise<void> {
    const started: DirtyLogListener[] = [];
    for (const l of this.#listeners) {
      try {
        await l.logGlobalStart?.();
        started.push(l);
      } catch (err) {
        await Promise.allSettled(started.map(async (s) => s.logGlobalStop?.()));
        throw new Error(`dirty logging of ${l.name} failed to start: ${message(err)}`, {
          cause: err,
        });
      }
    }
    this.#started = true;
  }

  /** `memory_global_dirty_log_stop`: every tracker is asked, failures are reported together. */
  async stop(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    const results = await Promise.allSettled(this.#listeners.map(async (l) => l.logGlobalStop?.()));
    const failed = results.flatMap((r, i) =>
      r.status === 'rejected' ? [`${this.#listeners[i]!.name}: ${message(r.reason)}`] : [],
    );
    if (failed.length > 0) throw new Error(`dirty logging failed to stop (${failed.join('; ')})`);
  }

  /** `memory_global_dirty_log_sync`: each tracker reports into the migration bitmaps. */
  async sync(final: boolean): Promise<void> {
    for (const l of this.#listeners) {
      try {
        await l.logSync?.(final);
      } catch (err) {
        throw new Error(`dirty log sync of ${l.name} failed: ${message(err)}`, { cause: err });
      }
    }
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
