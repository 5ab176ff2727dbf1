/**
 * A QMP client, for the demo, the CLI and tests; it speaks to this project's server and to
 * QEMU alike. It reads the greeting, negotiates, and then matches replies to commands by the
 * `id` it gives each one, so several commands may be in flight at once.
 *
 *   const qmp = await QmpClient.connect('unix:/run/vm.qmp');
 *   const done = qmp.waitEvent('MIGRATION', (e) => e.data?.status === 'completed', 60_000);
 *   await qmp.execute('migrate', { uri: 'tcp:10.0.0.2:4444' });
 *   await done;
 *   await qmp.close();
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { formatQmpAddress, toQmpAddress } from './address.ts';
import type { QmpAddress } from './address.ts';
import { QmpError, QmpErrorClass } from './errors.ts';
import { JsonFramer } from './framer.ts';
import { isJsonObject, parseJsonBytes } from './json-parser.ts';
import type { JsonObject, JsonValue } from './json-parser.ts';
import type { QmpEvent, QmpGreeting, QmpTimestamp } from './wire.ts';

export interface QmpClientOptions {
  /** Connecting, reading the greeting and negotiating, in ms. Default 10 000. */
  readonly connectTimeoutMs?: number;
  /** Default for `execute` and `waitEvent`, in ms; 0 waits forever. Default 30 000. */
  readonly timeoutMs?: number;
  /** Capabilities to enable in qmp_capabilities, e.g. ['oob']. Default none. */
  readonly capabilities?: readonly string[];
  /** Stop after the greeting, without qmp_capabilities (to test negotiation itself). */
  readonly skipNegotiation?: boolean;
  /** Longest message accepted from the server. Default 16 MiB. */
  readonly maxMessageBytes?: number;
  /** Events an `events()` iterator may hold unread before it fails. Default 10 000. */
  readonly maxBufferedEvents?: number;
}

export interface QmpExecuteOptions {
  /** Overrides the client's default timeout; 0 waits forever. */
  readonly timeoutMs?: number;
  /** Send as `exec-oob` (needs the "oob" capability). */
  readonly oob?: boolean;
}

/** The connection failed, was lost, or the server broke the protocol. */
export class QmpConnectionError extends Error {
  override readonly name = 'QmpConnectionError';
}

/** No reply (or no matching event) in time. The connection stays usable. */
export class QmpTimeoutError extends Error {
  override readonly name = 'QmpTimeoutError';
}

interface PendingCommand {
  readonly command: string;
  readonly resolve: (value: JsonValue) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout | undefined;
}

type EventListener = (event: QmpEvent) => void;

function deferred<T>(): {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: Error) => void;
} {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function toEvent(value: JsonObject): QmpEvent | undefined {
  const { event, data, timestamp } = value;
  if (typeof event !== 'string' || !isJsonObject(timestamp)) return undefined;
  const ts: QmpTimestamp = {
    seconds: Number(timestamp.seconds),
    microseconds: Number(timestamp.microseconds),
  };
  return isJsonObject(data) ? { event, data, timestamp: ts } : { event, timestamp: ts };
}

function toError(error: JsonValue | undefined): QmpError {
  if (isJsonObject(error) && typeof error.class === 'string' && typeof error.desc === 'string') {
    return new QmpError(error.class, error.desc);
  }
  return new QmpError(QmpErrorClass.GenericError, `malformed error reply ${JSON.stringify(error)}`);
}

export class QmpClient {
  /** The server as dialled, e.g. `unix:/run/vm.qmp`. */
  readonly address: string;

  readonly #socket: Socket;
  readonly #timeoutMs: number;
  readonly #maxBufferedEvents: number;
  readonly #framer: JsonFramer;
  readonly #pending = new Map<number, PendingCommand>();
  readonly #listeners = new Set<EventListener>();
  readonly #closeWatchers = new Set<(err: QmpConnectionError) => void>();
  readonly #greeting = deferred<QmpGreeting>();
  #greetingValue: QmpGreeting | undefined;
  #nextId = 1;
  #closedBy: QmpConnectionError | undefined;
  #connectError: Error | undefined;

  private constructor(socket: Socket, address: string, options: QmpClientOptions) {
    this.#socket = socket;
    this.address = address;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#maxBufferedEvents = options.maxBufferedEvents ?? 10_000;
    this.#greeting.promise.catch(() => undefined); // observed in #handshake
    this.#framer = new JsonFramer(
      {
        message: (bytes) => this.#onMessage(bytes),
        error: (desc) => this.#protocolError(`unreadable message from the server: ${desc}`),
      },
      { maxMessageBytes: options.maxMessageBytes ?? 16 << 20 },
    );
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#framer.push(chunk));
    socket.on('error', (err) => {
      this.#connectError ??= err;
    });
    socket.on('close', () => this.#onClose());
  }

  /** Connects, reads the greeting and (unless told not to) negotiates capabilities. */
  static async connect(
    address: string | QmpAddress,
    options: QmpClientOptions = {},
  ): Promise<QmpClient> {
    const where = toQmpAddress(address);
    const label = formatQmpAddress(where);
    const socket =
      where.kind === 'unix' ? connect(where.path) : connect({ host: where.host, port: where.port });
    const client = new QmpClient(socket, label, options);
    const limit = options.connectTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new QmpTimeoutError(`QMP ${label}: no greeting and negotiation within ${limit} ms`),
          ),
        limit,
      );
    });
    try {
      await Promise.race([client.#handshake(options), timeout]);
    } catch (err) {
      client.#socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  async #handshake(options: QmpClientOptions): Promise<void> {
    await this.#greeting.promise;
    if (options.skipNegotiation) return;
    const caps = options.capabilities ?? [];
    await this.execute('qmp_capabilities', caps.length > 0 ? { enable: [...caps] } : undefined);
  }

  /** The server's greeting (`{"QMP": {"version", "capabilities"}}`). */
  get greeting(): QmpGreeting {
    if (!this.#greetingValue) throw new QmpConnectionError(`QMP ${this.address}: no greeting yet`);
    return this.#greetingValue;
  }

  get closed(): boolean {
    return this.#closedBy !== undefined;
  }

  /**
   * Runs a command and resolves with its `return` value; rejects with QmpError on an error
   * reply, QmpTimeoutError when no reply comes in time, QmpConnectionError when the
   * connection is or gets lost.
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: QmpExecuteOptions = {},
  ): Promise<T> {
    if (this.#closedBy) return Promise.reject(this.#closedBy);
    const id = this.#nextId++;
    const request: Record<string, unknown> = { [options.oob ? 'exec-oob' : 'execute']: command };
    if (args !== undefined) request.arguments = args;
    request.id = id;
    let line: string;
    try {
      line = JSON.stringify(request) + '\n';
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return new Promise<T>((resolve, reject) => {
      const limit = options.timeoutMs ?? this.#timeoutMs;
      const timer =
        limit > 0
          ? setTimeout(() => {
              this.#pending.delete(id);
              reject(
                new QmpTimeoutError(
                  `QMP ${this.address}: no reply to '${command}' within ${limit} ms`,
                ),
              );
            }, limit)
          : undefined;
      this.#pending.set(id, { command, resolve: resolve as (v: JsonValue) => void, reject, timer });
      this.#socket.write(line);
    });
  }

  /** Calls `listener` for every event until the returned function is called. */
  onEvent(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Resolves with the first event named `name` (and accepted by `predicate`) that arrives
   * after this call. Start waiting before the command that causes the event.
   */
  waitEvent(
    name: string,
    predicate: (event: QmpEvent) => boolean = () => true,
    timeoutMs: number = this.#timeoutMs,
  ): Promise<QmpEvent> {
    if (this.#closedBy) return Promise.reject(this.#closedBy);
    return new Promise<QmpEvent>((resolve, reject) => {
      const finish = (): void => {
        unsubscribe();
        this.#closeWatchers.delete(onClose);
        clearTimeout(timer);
      };
      const unsubscribe = this.onEvent((event) => {
        if (event.event !== name || !predicate(event)) return;
        finish();
        resolve(event);
      });
      const onClose = (err: QmpConnectionError): void => {
        finish();
        reject(err);
      };
      this.#closeWatchers.add(onClose);
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              finish();
              reject(
                new QmpTimeoutError(`QMP ${this.address}: no ${name} event within ${timeoutMs} ms`),
              );
            }, timeoutMs)
          : undefined;
    });
  }

  /**
   * Every event from now on, in order; the iteration ends when the connection closes. An
   * iterator left unread fails once more than `maxBufferedEvents` pile up.
   */
  events(): AsyncIterableIterator<QmpEvent> {
    const buffered: QmpEvent[] = [];
    // Only read when nothing is buffered, so an event goes either to `waiting` or the buffer.
    let waiting: ((r: IteratorResult<QmpEvent>) => void) | undefined;
    let failure: Error | undefined;
    let ended = false;
    const stop = (): void => {
      ended = true;
      unsubscribe();
      this.#closeWatchers.delete(onClose);
    };
    const unsubscribe = this.onEvent((event) => {
      if (waiting) {
        const deliver = waiting;
        waiting = undefined;
        deliver({ value: event, done: false });
      } else if (buffered.length >= this.#maxBufferedEvents) {
        failure = new Error(
          `QMP ${this.address}: event iterator fell behind (${this.#maxBufferedEvents} unread)`,
        );
        stop();
      } else {
        buffered.push(event);
      }
    });
    const onClose = (): void => {
      stop();
      waiting?.({ value: undefined, done: true });
      waiting = undefined;
    };
    this.#closeWatchers.add(onClose);
    if (this.#closedBy) stop();
    const iterator: AsyncIterableIterator<QmpEvent> = {
      next: () => {
        const event = buffered.shift();
        if (event) return Promise.resolve({ value: event, done: false });
        if (failure) return Promise.reject(failure);
        if (ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          waiting = resolve;
        });
      },
      return: () => {
        stop();
        waiting?.({ value: undefined, done: true });
        waiting = undefined;
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /** Closes the connection; commands still waiting reject with QmpConnectionError. */
  async close(): Promise<void> {
    if (this.#socket.closed) return;
    const closed = new Promise<void>((resolve) => this.#socket.once('close', () => resolve()));
    this.#closedBy ??= new QmpConnectionError(
      `QMP ${this.address}: connection closed by the client`,
    );
    this.#socket.destroy();
    await closed;
  }

  #onMessage(bytes: Buffer): void {
    let value: JsonValue;
    try {
      value = parseJsonBytes(bytes);
    } catch (err) {
      this.#protocolError(`invalid JSON from the server: ${(err as Error).message}`);
      return;
    }
    if (!isJsonObject(value)) {
      this.#protocolError(`the server sent a non-object: ${bytes.toString('utf8', 0, 200)}`);
      return;
    }
    if (!this.#greetingValue) {
      if (!isJsonObject(value.QMP)) {
        this.#protocolError(`expected the QMP greeting, got ${bytes.toString('utf8', 0, 200)}`);
        return;
      }
      this.#greetingValue = value as unknown as QmpGreeting;
      this.#greeting.resolve(this.#greetingValue);
      return;
    }
    if (Object.hasOwn(value, 'event')) {
      const event = toEvent(value);
      if (event) for (const listener of [...this.#listeners]) listener(event);
      return;
    }
    const id = value.id;
    const pending = typeof id === 'number' ? this.#pending.get(id) : undefined;
    if (!pending) return; // a late reply after a timeout, or one we never asked for
    this.#pending.delete(id as number);
    clearTimeout(pending.timer);
    if (Object.hasOwn(value, 'error')) pending.reject(toError(value.error));
    else pending.resolve(value.return ?? null);
  }

  #protocolError(why: string): void {
    this.#closedBy ??= new QmpConnectionError(`QMP ${this.address}: ${why}`);
    this.#socket.destroy();
  }

  #onClose(): void {
    const cause = this.#connectError
      ? this.#greetingValue
        ? `connection lost: ${this.#connectError.message}`
        : `cannot connect: ${this.#connectError.message}`
      : 'connection closed by the server';
    const err = this.#closedBy ?? new QmpConnectionError(`QMP ${this.address}: ${cause}`);
    this.#closedBy = err;
    this.#greeting.reject(err);
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      this.#pending.delete(id);
      pending.reject(
        new QmpConnectionError(`${err.message} (while waiting for '${pending.command}')`),
      );
    }
    for (const watcher of [...this.#closeWatchers]) watcher(err);
  }
}
