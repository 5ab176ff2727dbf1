/**
 * `QemuSemaphore` for tasks on one event loop: `post()` adds a unit, `wait()` takes one or
 * waits for it. `fail(err)` makes every wait, now and later, reject: a channel that broke
 * must not leave its peers waiting for a sync that never comes.
 */
export class Semaphore {
  #count: number;
  #waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];
  #failure: Error | null = null;

  constructor(initial = 0) {
    this.#count = initial;
  }

  post(): void {
    const w = this.#waiters.shift();
    if (w !== undefined) w.resolve();
    else this.#count++;
  }

  wait(): Promise<void> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    if (this.#count > 0) {
      this.#count--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  fail(err: Error): void {
    this.#failure ??= err;
    for (const w of this.#waiters.splice(0)) w.reject(this.#failure);
  }
}
