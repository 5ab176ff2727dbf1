/**
 * A QMP server that QEMU's clients cannot tell from QEMU (toolchain.md §5): the greeting,
 * negotiation, in-order replies with `id` echoed, QEMU's error classes and texts, timestamped
 * events. It is generic: the VM registers its commands (qemu-migration.md §5.2) and emits its
 * events (§5.3); the server knows only the built-in protocol commands.
 *
 *   const qmp = new QmpServer({ onQuit: () => vm.shutdown() });
 *   qmp.register('query-status', { handler: () => vm.status() });
 *   await qmp.listen('unix:/run/vm.qmp');
 *   qmp.emit('STOP');
 */
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { formatQmpAddress, toQmpAddress } from './address.ts';
import type { QmpAddress } from './address.ts';
import { QMP_CAPABILITIES, registerBuiltins } from './builtins.ts';
import { QmpConnection } from './connection.ts';
import { DEFAULT_MAX_MESSAGE_BYTES } from './framer.ts';
import { listenQmp } from './listen.ts';
import type { QmpListener } from './listen.ts';
import { QmpCommandRegistry } from './registry.ts';
import type { QmpArgsSchema, QmpCommandDef, QmpConnectionInfo } from './registry.ts';
import { encodeEvent, encodeGreeting, timestampOf, versionInfo, wallClockMicros } from './wire.ts';
import type { QmpVersionInfo, QmpVersionTriple } from './wire.ts';

export interface QmpServerOptions {
  /** Reported in the greeting and by query-version. Default 10.1.0, the QEMU modelled. */
  readonly version?: QmpVersionTriple;
  /** The greeting's `package` string. Default "vfio-migration". */
  readonly package?: string;
  /** What `quit` does, after its reply is written. Default: close this server. */
  readonly onQuit?: () => void | Promise<void>;
  /** Longest accepted message, in bytes. Default 1 MiB (QEMU: 64 MiB). */
  readonly maxMessageBytes?: number;
  /** Unsent output past which a client is dropped. Default 4 MiB. */
  readonly maxOutputBytes?: number;
  /** In-band requests waiting per client before reading pauses. Default 8, as QEMU. */
  readonly maxPendingCommands?: number;
  /** Event timestamps: microseconds since the Unix epoch. Default: the wall clock. */
  readonly clock?: () => number;
  /** Told when a client goes away and why ("client closed the connection", "output ..."). */
  readonly onDisconnect?: (client: QmpConnectionInfo, reason: string) => void;
  /** Errors that belong to no request (an after-reply hook failing). Default: a warning. */
  readonly onError?: (err: unknown, where: string) => void;
}

const DEFAULT_VERSION: QmpVersionTriple = { major: 10, minor: 1, micro: 0 };
const DEFAULT_MAX_OUTPUT_BYTES = 4 << 20;
/** monitor/monitor-internal.h QMP_REQ_QUEUE_LEN_MAX. */
const DEFAULT_MAX_PENDING = 8;

type LimitName = 'maxMessageBytes' | 'maxOutputBytes' | 'maxPendingCommands';

function warn(err: unknown, where: string): void {
  process.emitWarning(`${where}: ${err instanceof Error ? err.message : String(err)}`);
}

export class QmpServer {
  readonly #registry = new QmpCommandRegistry();
  readonly #version: QmpVersionInfo;
  readonly #greeting: string;
  readonly #clock: () => number;
  readonly #maxMessageBytes: number;
  readonly #maxOutputBytes: number;
  readonly #maxPending: number;
  readonly #onDisconnect: QmpServerOptions['onDisconnect'];
  readonly #onError: (err: unknown, where: string) => void;
  readonly #connections = new Set<QmpConnection>();
  readonly #listeners: QmpListener[] = [];
  #nextClientId = 1;
  #closing: Promise<void> | undefined;

  constructor(options: QmpServerOptions = {}) {
    this.#version = versionInfo(
      options.version ?? DEFAULT_VERSION,
      options.package ?? 'vfio-migration',
    );
    this.#greeting = encodeGreeting(this.#version, QMP_CAPABILITIES);
    this.#clock = options.clock ?? wallClockMicros;
    const limit = (name: LimitName, fallback: number): number => {
      const v = options[name] ?? fallback;
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`QmpServer: ${name} must be >= 1`);
      return v;
    };
    this.#maxMessageBytes = limit('maxMessageBytes', DEFAULT_MAX_MESSAGE_BYTES);
    this.#maxOutputBytes = limit('maxOutputBytes', DEFAULT_MAX_OUTPUT_BYTES);
    this.#maxPending = limit('maxPendingCommands', DEFAULT_MAX_PENDING);
    this.#onDisconnect = options.onDisconnect;
    this.#onError = options.onError ?? warn;
    const onQuit = options.onQuit ?? (() => this.close());
    registerBuiltins(this.#registry, { version: this.#version, onQuit });
  }

  /** Adds a command; throws if the name is taken or malformed. */
  register<S extends QmpArgsSchema>(name: string, def: QmpCommandDef<S>): this {
    this.#registry.register(name, def);
    return this;
  }

  /** Registered command names, built-ins included. */
  commands(): string[] {
    return this.#registry.names();
  }

  get clientCount(): number {
    return this.#connections.size;
  }

  /** The addresses listened on, as clients should dial them. */
  get addresses(): string[] {
    return this.#listeners.map((l) => l.address);
  }

  /**
   * Starts listening on `unix:PATH` or `tcp:HOST:PORT` (port 0 picks a free one) and returns
   * the address clients should use. May be called several times for several endpoints.
   */
  async listen(address: string | QmpAddress): Promise<string> {
    if (this.#closing) throw new Error('QmpServer: listen() after close()');
    const where = toQmpAddress(address);
    const net = createServer({ allowHalfOpen: true });
    // Set once the socket is in place; nobody else can connect before (see listen.ts).
    let label = formatQmpAddress(where);
    net.on('connection', (socket) => this.#accept(socket, label));
    net.on('error', (err) => this.#onError(err, 'QMP listener'));
    const listener = await listenQmp(net, where);
    label = listener.address;
    this.#listeners.push(listener);
    return listener.address;
  }

  /**
   * Broadcasts an event to every negotiated client, now. Never blocks: a client that cannot
   * keep up is dropped. Throws TypeError if `data` cannot be written as JSON.
   */
  emit(event: string, data?: Record<string, unknown>): void {
    if (event === '') throw new TypeError('QMP event name must not be empty');
    const line = encodeEvent(event, data, timestampOf(this.#clock()));
    for (const connection of this.#connections) connection.sendEvent(line);
  }

  /** Stops listening, drops every client and removes UNIX socket files. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    const closing = this.#listeners.map((l) => l.close());
    for (const connection of this.#connections) connection.close('server closed');
    await Promise.all(closing);
  }

  #accept(socket: Socket, listenerAddress: string): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const peer =
      socket.remoteAddress !== undefined
        ? `tcp:${socket.remoteFamily === 'IPv6' ? `[${socket.remoteAddress}]` : socket.remoteAddress}:${socket.remotePort}`
        : listenerAddress;
    const connection = new QmpConnection(
      socket,
      { id: this.#nextClientId++, peer },
      {
        registry: this.#registry,
        greeting: this.#greeting,
        maxMessageBytes: this.#maxMessageBytes,
        maxOutputBytes: this.#maxOutputBytes,
        maxPendingCommands: this.#maxPending,
        onError: this.#onError,
        onClose: (closed, reason) => {
          this.#connections.delete(closed);
          this.#onDisconnect?.(connection.info, reason);
        },
      },
    );
    this.#connections.add(connection);
  }
}
