/**
 * The command set is data: whoever owns the VM registers its commands (qemu-migration.md §5.2)
 * with a zod schema for the arguments and an async handler; the server only dispatches.
 */
import { z } from 'zod';
import { describeArgumentError } from './arg-errors.ts';
import { genericError } from './errors.ts';
import type { JsonObject } from './json-parser.ts';

/** Any zod object schema. Unknown members are always refused, as QEMU refuses them. */
export type QmpArgsSchema = z.ZodObject<z.core.$ZodShape, z.core.$ZodObjectConfig>;

/** Per-connection protocol state (monitor/qmp.c: `mon->commands`, `mon->capab`). */
export interface QmpSession {
  /** `qmp_capabilities` succeeded: every command is available and events are sent. */
  negotiated: boolean;
  /** The client enabled the "oob" capability, so `exec-oob` is accepted. */
  oob: boolean;
}

export interface QmpConnectionInfo {
  /** Unique within one server, from 1. */
  readonly id: number;
  /** `unix:PATH` of the listening socket, or `tcp:HOST:PORT` of the remote end. */
  readonly peer: string;
}

export interface QmpCommandContext {
  readonly client: QmpConnectionInfo;
  /** Changed only by the built-in qmp_capabilities. */
  readonly session: QmpSession;
  /** Aborted when the client can send no more (closed, or half-closed), for handlers that wait. */
  readonly signal: AbortSignal;
  /** True when the command came as `exec-oob`. */
  readonly outOfBand: boolean;
  /** Runs `fn` once this command's reply has been handed to the socket (e.g. `quit`). */
  afterReply(fn: () => void | Promise<void>): void;
}

export interface QmpCommandDef<S extends QmpArgsSchema = QmpArgsSchema> {
  /** The `arguments` object; omitted for a command that takes none. */
  readonly args?: S;
  /** Returns the `return` value (undefined -> `{}`); throws QmpError for an error reply. */
  readonly handler: (args: z.output<S>, ctx: QmpCommandContext) => unknown;
  /** Available before `qmp_capabilities` (QEMU: only qmp_capabilities itself). */
  readonly allowedBeforeNegotiation?: boolean;
  /** May be sent as `exec-oob` and then runs without waiting for in-band commands. */
  readonly oob?: boolean;
}

export interface QmpCommand {
  readonly name: string;
  readonly allowedBeforeNegotiation: boolean;
  readonly oob: boolean;
  /** Validates `args` (QEMU's wording on failure) and runs the handler. */
  run(args: JsonObject, ctx: QmpCommandContext): Promise<unknown>;
}

const COMMAND_NAME = /^[A-Za-z][A-Za-z0-9_.+-]*$/;
const NO_ARGUMENTS = z.strictObject({});

export class QmpCommandRegistry {
  readonly #commands = new Map<string, QmpCommand>();

  register<S extends QmpArgsSchema>(name: string, def: QmpCommandDef<S>): void {
    if (!COMMAND_NAME.test(name)) throw new Error(`invalid QMP command name '${name}'`);
    if (this.#commands.has(name)) throw new Error(`QMP command '${name}' is already registered`);
    const schema: QmpArgsSchema = def.args ? def.args.strict() : NO_ARGUMENTS;
    this.#commands.set(name, {
      name,
      allowedBeforeNegotiation: def.allowedBeforeNegotiation ?? false,
      oob: def.oob ?? false,
      async run(args, ctx) {
        const parsed = await schema.safeParseAsync(args, { reportInput: true });
        if (!parsed.success) throw genericError(describeArgumentError(parsed.error));
        return def.handler(parsed.data as z.output<S>, ctx);
      },
    });
  }

  get(name: string): QmpCommand | undefined {
    return this.#commands.get(name);
  }

  has(name: string): boolean {
    return this.#commands.has(name);
  }

  /** Names in registration order, for `query-commands`. */
  names(): string[] {
    return [...this.#commands.keys()];
  }
}
