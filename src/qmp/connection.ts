/**
 * One QMP client on the server side: greeting, framing, the in-band queue, OOB, events and the
 * output bound.
 *
 * In-band commands run one at a time and are answered strictly in order (toolchain.md §5
 * rule 3); framing and parse errors take their place in that order, as QEMU queues them. Up to
 * `maxPendingCommands` requests wait; past that, reading pauses (QEMU suspends the monitor)
 * so a client that pipelines faster than commands complete is slowed down, not buffered.
 * `exec-oob` requests of OOB-capable commands skip the queue once OOB is enabled.
 *
 * Nothing a client does can block the VM or other clients: output goes through the socket's
 * own buffer and a client whose unsent output passes `maxOutputBytes` is dropped.
 */
import type { Socket } from 'node:net';
import { genericError } from './errors.ts';
import { JsonFramer } from './framer.ts';
import { dispatchRequest, isOutOfBandRequest } from './dispatch.ts';
import type { DispatchEnv } from './dispatch.ts';
import { parseJsonBytes } from './json-parser.ts';
import type { JsonValue } from './json-parser.ts';
import type { QmpCommandRegistry, QmpConnectionInfo, QmpSession } from './registry.ts';
import { encodeError } from './wire.ts';

export interface QmpConnectionOptions {
  readonly registry: QmpCommandRegistry;
  /** The encoded greeting, sent in its own write as soon as the client connects. */
  readonly greeting: string;
  readonly maxMessageBytes: number;
  readonly maxOutputBytes: number;
  readonly maxPendingCommands: number;
  readonly onClose: (connection: QmpConnection, reason: string) => void;
  readonly onError: (err: unknown, where: string) => void;
}

type Pending = { readonly value: JsonValue } | { readonly parseError: string };

type Hook = () => void | Promise<void>;

export class QmpConnection {
  readonly info: QmpConnectionInfo;
  readonly session: QmpSession = { negotiated: false, oob: false };

  readonly #socket: Socket;
  readonly #options: QmpConnectionOptions;
  readonly #framer: JsonFramer;
  readonly #abort = new AbortController();
  readonly #queue: Pending[] = [];
  #running = false;
  #paused = false;
  #inputEnded = false;
  #closed = false;
  #closeReason = 'client closed the connection';

  constructor(socket: Socket, info: QmpConnectionInfo, options: QmpConnectionOptions) {
    this.#socket = socket;
    this.info = info;
    this.#options = options;
    this.#framer = new JsonFramer(
      {
        message: (bytes) => this.#onMessage(bytes),
        error: (desc) => this.#enqueue({ parseError: desc }),
      },
      { maxMessageBytes: options.maxMessageBytes },
    );
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.#framer.push(chunk);
      } catch (err) {
        this.#options.onError(err, `QMP client ${info.peer}`);
        this.close('internal error while reading');
      }
    });
    socket.on('end', () => {
      // No more requests can come: handlers waiting on the client stop (ctx.signal), and
      // what is queued is still answered, for clients that only half-closed.
      this.#inputEnded = true;
      this.#abort.abort(new Error(`QMP client ${info.peer} closed its side`));
      this.#endIfDone();
    });
    socket.on('error', (err) => {
      this.#closeReason = `socket error: ${err.message}`;
    });
    socket.on('close', () => this.#onClose());
    this.#write(options.greeting);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Writes an encoded event, if this client has negotiated (QEMU sends none before). */
  sendEvent(line: string): void {
    if (this.session.negotiated) this.#write(line);
  }

  close(reason: string): void {
    if (this.#closed) return;
    this.#closeReason = reason;
    this.#socket.destroy();
  }

  #onMessage(bytes: Buffer): void {
    let value: JsonValue;
    try {
      value = parseJsonBytes(bytes);
    } catch (err) {
      this.#enqueue({ parseError: err instanceof Error ? err.message : String(err) });
      return;
    }
    if (this.session.oob && isOutOfBandRequest(value)) {
      void this.#answer(value);
      return;
    }
    this.#enqueue({ value });
  }

  #enqueue(item: Pending): void {
    if (this.#closed) return;
    this.#queue.push(item);
    this.#updateFlow();
    void this.#pump();
  }

  async #pump(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      for (let item = this.#queue.shift(); item !== undefined; item = this.#queue.shift()) {
        this.#updateFlow();
        if ('parseError' in item)
          this.#write(encodeError(genericError(item.parseError), undefined));
        else await this.#answer(item.value);
        if (this.#closed) break;
      }
    } finally {
      this.#running = false;
    }
    this.#endIfDone();
  }

  async #answer(value: JsonValue): Promise<void> {
    const hooks: Hook[] = [];
    const env: DispatchEnv = {
      registry: this.#options.registry,
      session: this.session,
      client: this.info,
      signal: this.#abort.signal,
      afterReply: (fn) => hooks.push(fn),
    };
    let reply: string;
    try {
      reply = await dispatchRequest(env, value);
    } catch (err) {
      // dispatchRequest turns every failure into a reply; this is a bug, not the client's.
      this.#options.onError(err, `QMP client ${this.info.peer}`);
      this.close('internal error while answering');
      return;
    }
    this.#write(reply, hooks.length > 0 ? () => this.#runHooks(hooks) : undefined);
  }

  #runHooks(hooks: readonly Hook[]): void {
    for (const hook of hooks) {
      Promise.resolve()
        .then(hook)
        .catch((err: unknown) => this.#options.onError(err, 'QMP after-reply hook'));
    }
  }

  #write(line: string, flushed?: () => void): void {
    if (this.#closed || this.#socket.destroyed || this.#socket.writableEnded) {
      flushed?.();
      return;
    }
    this.#socket.write(line, flushed === undefined ? undefined : () => flushed());
    if (this.#socket.writableLength > this.#options.maxOutputBytes) {
      this.close(`output queue over ${this.#options.maxOutputBytes} bytes: client not reading`);
    }
  }

  /** QEMU's monitor_suspend/resume: stop reading while too many requests wait. */
  #updateFlow(): void {
    const full = this.#queue.length >= this.#options.maxPendingCommands;
    if (full && !this.#paused) {
      this.#paused = true;
      this.#socket.pause();
    } else if (!full && this.#paused) {
      this.#paused = false;
      this.#socket.resume();
    }
  }

  /** A client that half-closed still gets every reply, then the connection ends. */
  #endIfDone(): void {
    if (this.#inputEnded && !this.#running && this.#queue.length === 0 && !this.#closed) {
      this.#socket.end();
    }
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.length = 0;
    if (!this.#abort.signal.aborted) {
      this.#abort.abort(new Error(`QMP client ${this.info.peer} disconnected`));
    }
    this.#options.onClose(this, this.#closeReason);
  }
}
