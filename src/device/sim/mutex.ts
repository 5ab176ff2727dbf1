/**
 * The driver's `state_mutex`: SET calls are serialized, a concurrent SET waits its turn
 * (vfio-uapi.md §4.4). A reset that arrives while the mutex is held is deferred and applied by
 * the holder on unlock, as mlx5's `state_mutex_unlock()` does (§8).
 */
export class StateMutex {
  #tail: Promise<void> = Promise.resolve();
  #held = false;
  /** Work queued for the moment the current holder unlocks (the deferred reset). */
  #onUnlock: (() => void) | null = null;

  get held(): boolean {
    return this.#held;
  }

  /** Resolves once the mutex is ours; call the returned function exactly once to unlock. */
  async lock(): Promise<() => void> {
    const previous = this.#tail;
    let release!: () => void;
    this.#tail = new Promise<void>((resolve) => (release = resolve));
    await previous;
    this.#held = true;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const deferred = this.#onUnlock;
      this.#onUnlock = null;
      deferred?.();
      this.#held = false;
      release();
    };
  }

  /** Runs `work` now when the mutex is free, otherwise when its holder unlocks. */
  runNowOrOnUnlock(work: () => void): void {
    if (this.#held) this.#onUnlock = work;
    else work();
  }
}
