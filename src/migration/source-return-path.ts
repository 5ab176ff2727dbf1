/**
 * The source's return-path reader (`source_return_path_thread`, qemu-migration.md §1.1,
 * §2.5): messages from the destination on the same socket until SHUT.
 *
 *   SHUT u32       the destination is done; non-zero means it failed ("Sibling indicated error")
 *   PONG u32       answer to a PING
 *   SWITCHOVER_ACK the destination agrees to the switchover
 *
 * Postcopy's page requests and resume acks are refused: there is no postcopy here.
 */
import {
  MIG_RP_MSG_PONG,
  MIG_RP_MSG_SHUT,
  MIG_RP_MSG_SWITCHOVER_ACK,
  messageU32,
  readReturnPathMessage,
} from './stream/index.ts';
import type { QEMUFileReader } from './stream/index.ts';

export class SourceReturnPath {
  readonly #reader: QEMUFileReader;
  #switchoverAcked = false;
  #pongs: number[] = [];
  #shut: number | null = null;
  /** Settles once: resolves on SHUT 0, rejects on a SHUT error, a bad message or a closed channel. */
  readonly done: Promise<void>;

  constructor(reader: QEMUFileReader) {
    this.#reader = reader;
    this.done = this.#run();
    // The owner awaits `done` when it needs it; an early failure must not go unhandled meanwhile.
    this.done.catch(() => undefined);
  }

  /** `switchover_acked`. */
  get switchoverAcked(): boolean {
    return this.#switchoverAcked;
  }

  /** The value of the SHUT received (0: the destination is done), or null before one. */
  get shut(): number | null {
    return this.#shut;
  }

  /** PONG values received, in order. */
  get pongs(): readonly number[] {
    return this.#pongs;
  }

  /** Stops reading (the channel itself is the owner's). */
  close(): void {
    this.#reader.close();
  }

  async #run(): Promise<void> {
    for (;;) {
      let m;
      try {
        m = await readReturnPathMessage(this.#reader);
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        throw new Error(`return path: ${reason}`, { cause: err });
      }
      switch (m.type) {
        case MIG_RP_MSG_SHUT: {
          const error = messageU32(m);
          this.#shut = error;
          if (error !== 0) throw new Error(`Sibling indicated error ${error}`);
          return;
        }
        case MIG_RP_MSG_PONG:
          this.#pongs.push(messageU32(m));
          break;
        case MIG_RP_MSG_SWITCHOVER_ACK:
          this.#switchoverAcked = true;
          break;
        default:
          throw new Error(`return path: ${m.name} received, but postcopy is not supported`);
      }
    }
  }
}
