/**
 * A byte-level QMP peer for protocol tests: sends exactly the bytes given and hands back each
 * message the server wrote, parsed. Every wait is bounded.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { parseQmpAddress } from '../../src/qmp/address.ts';
import { JsonFramer } from '../../src/qmp/framer.ts';
import { isJsonObject, parseJsonBytes } from '../../src/qmp/json-parser.ts';
import type { JsonObject } from '../../src/qmp/json-parser.ts';

export class RawQmp {
  readonly socket: Socket;
  /** The first chunk received: the greeting, in its own write. */
  readonly firstChunk: Promise<Buffer>;
  /** Resolves when the server closes the connection. */
  readonly closed: Promise<void>;
  /** Raw text received, for checks on the exact bytes. */
  text = '';
  readonly #messages: JsonObject[] = [];
  #wake: (() => void) | undefined;
  #ended = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.firstChunk = new Promise((resolve) => socket.once('data', resolve));
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.closed.then(() => {
      this.#ended = true;
      this.#wake?.();
    });
    const framer = new JsonFramer({
      message: (bytes) => {
        const value = parseJsonBytes(bytes);
        if (!isJsonObject(value)) throw new Error(`server sent a non-object: ${bytes.toString()}`);
        this.#messages.push(value);
        this.#wake?.();
      },
      error: (desc) => {
        throw new Error(`server sent bad framing: ${desc}`);
      },
    });
    socket.on('data', (chunk: Buffer) => {
      this.text += chunk.toString('utf8');
      framer.push(chunk);
    });
    socket.on('error', () => undefined);
  }

  static async connect(address: string, t?: TestContext): Promise<RawQmp> {
    const where = parseQmpAddress(address);
    const socket =
      where.kind === 'unix' ? connect(where.path) : connect({ host: where.host, port: where.port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const raw = new RawQmp(socket);
    t?.after(() => raw.socket.destroy());
    return raw;
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** The next message, waiting up to `timeoutMs`. */
  async next(timeoutMs = 5000): Promise<JsonObject> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const msg = this.#messages.shift();
      if (msg) return msg;
      if (this.#ended) throw new Error('connection closed while waiting for a message');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          this.#wake = undefined;
          resolve();
        };
      });
    }
  }

  async take(n: number, timeoutMs = 5000): Promise<JsonObject[]> {
    const out: JsonObject[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next(timeoutMs));
    return out;
  }

  /** Reads the greeting and completes capabilities negotiation. */
  async negotiate(enable?: string[]): Promise<JsonObject> {
    const greeting = await this.next();
    const args = enable ? { arguments: { enable } } : {};
    this.send(JSON.stringify({ execute: 'qmp_capabilities', ...args, id: '__neg' }));
    const reply = await this.next();
    if (reply.id !== '__neg' || !('return' in reply)) {
      throw new Error(`negotiation failed: ${JSON.stringify(reply)}`);
    }
    return greeting;
  }
}

/** A fresh private directory under the system temp dir, removed after the test. */
export async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'qmp-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Resolves after `ms`, or early when `signal` aborts (a departed client's handler). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
