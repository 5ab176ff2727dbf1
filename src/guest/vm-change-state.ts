/**
 * VM-state change handlers (qemu-migration.md §3.2; QEMU's `vm_change_state_head`): callbacks
 * run when the VM starts or stops, each with an optional `prepare` callback. The list is kept
 * in ascending priority; a handler added with a priority equal to others goes after them.
 *
 * `notify(running, state)` walks the list twice: all `prepare` callbacks, then all main
 * callbacks, in ascending priority when starting and descending when stopping. That is what
 * lets every VFIO device reach a *_P2P state before any device stops or runs.
 *
 * Callbacks may be async (device ioctls are) and are awaited one after another. A callback that
 * fails does not stop the walk: QEMU handlers cannot fail, so the error is collected and handed
 * to the caller (the migration layer turns it into a failed migration).
 */
import type { RunState } from './runstate.ts';

export type VmChangeStateCallback = (running: boolean, state: RunState) => void | Promise<void>;

export interface VmChangeStateHandlerSpec {
  /** For traces and error reports, e.g. "vfio nic0". */
  readonly name?: string;
  /** Low priorities run first when the VM starts, last when it stops (qdev depth for VFIO). */
  readonly priority: number;
  readonly prepare?: VmChangeStateCallback;
  readonly handler: VmChangeStateCallback;
}

/** What `add` returns: removes the handler (also usable with `using`). */
export interface VmChangeStateEntry extends Disposable {
  remove(): void;
}

export interface VmChangeStateFailure {
  readonly name: string;
  readonly priority: number;
  readonly phase: 'prepare' | 'handler';
  readonly error: unknown;
}

interface Entry {
  readonly spec: VmChangeStateHandlerSpec;
  readonly name: string;
  removed: boolean;
}

export class VmChangeStateHandlers {
  readonly #entries: Entry[] = [];
  #added = 0;

  /** `qemu_add_vm_change_state_handler_prio_full`. */
  add(spec: VmChangeStateHandlerSpec): VmChangeStateEntry {
    if (!Number.isFinite(spec.priority)) {
      throw new RangeError(`VM change state handler priority ${spec.priority} is not finite`);
    }
    const entry: Entry = { spec, name: spec.name ?? `handler#${this.#added++}`, removed: false };
    const at = this.#entries.findIndex((e) => spec.priority < e.spec.priority);
    this.#entries.splice(at < 0 ? this.#entries.length : at, 0, entry);
    const remove = (): void => {
      if (entry.removed) return;
      entry.removed = true;
      this.#entries.splice(this.#entries.indexOf(entry), 1);
    };
    return { remove, [Symbol.dispose]: remove };
  }

  get size(): number {
    return this.#entries.length;
  }

  /**
   * `vm_state_notify`. Resolves with the failures, in call order (empty when all succeeded).
   * A handler removed during the walk is not called afterwards.
   */
  async notify(running: boolean, state: RunState): Promise<VmChangeStateFailure[]> {
    const walk = running ? [...this.#entries] : [...this.#entries].reverse();
    const failures: VmChangeStateFailure[] = [];
    for (const phase of ['prepare', 'handler'] as const) {
      for (const e of walk) {
        const cb = e.spec[phase];
        if (e.removed || cb === undefined) continue;
        try {
          await cb(running, state);
        } catch (error) {
          failures.push({ name: e.name, priority: e.spec.priority, phase, error });
        }
      }
    }
    return failures;
  }
}
