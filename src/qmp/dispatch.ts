/**
 * One request in, one encoded reply out, with QEMU's checks in QEMU's order
 * (qapi/qmp-dispatch.c, monitor/qmp.c): the request envelope, the command's availability in
 * this session, OOB permission, the arguments, then the handler. Errors never escape: every
 * failure, including a handler's own exception, becomes an error reply.
 */
import { QmpError, QmpErrorClass, genericError, toQmpError } from './errors.ts';
import { isJsonObject } from './json-parser.ts';
import type { JsonObject, JsonValue } from './json-parser.ts';
import type {
  QmpCommandContext,
  QmpCommandRegistry,
  QmpConnectionInfo,
  QmpSession,
} from './registry.ts';
import { encodeError, encodeReturn } from './wire.ts';
import type { QmpId } from './wire.ts';

export const NEGOTIATION_EXPECTED = "Expecting capabilities negotiation with 'qmp_capabilities'";

export interface QmpRequest {
  readonly command: string;
  readonly args: JsonObject;
  readonly outOfBand: boolean;
}

/** qmp_is_oob(): `exec-oob` without `execute`, decided before the request is queued. */
export function isOutOfBandRequest(value: JsonValue): boolean {
  return (
    isJsonObject(value) && Object.hasOwn(value, 'exec-oob') && !Object.hasOwn(value, 'execute')
  );
}

export function requestId(value: JsonObject): QmpId {
  return Object.hasOwn(value, 'id') ? value.id : undefined;
}

/**
 * qmp_dispatch_check_obj(). QEMU visits members in its hash-table order, which puts
 * `exec-oob` before `execute`; other members are checked in the order the client sent them.
 */
export function checkRequest(value: JsonObject, allowOob: boolean): QmpRequest {
  let execKey: string | undefined;
  const members = Object.entries(value);
  const oobAt = members.findIndex(([key]) => key === 'exec-oob');
  if (oobAt > 0) members.unshift(...members.splice(oobAt, 1));
  for (const [key, member] of members) {
    if (key === 'execute' || (key === 'exec-oob' && allowOob)) {
      if (typeof member !== 'string') {
        throw genericError(`QMP input member '${key}' must be a string`);
      }
      if (execKey !== undefined) {
        throw genericError(`QMP input member '${key}' clashes with '${execKey}'`);
      }
      execKey = key;
    } else if (key === 'arguments') {
      if (!isJsonObject(member))
        throw genericError("QMP input member 'arguments' must be an object");
    } else if (key !== 'id') {
      throw genericError(`QMP input member '${key}' is unexpected`);
    }
  }
  if (execKey === undefined) throw genericError("QMP input lacks member 'execute'");
  const args = value.arguments;
  return {
    command: value[execKey] as string,
    args: isJsonObject(args) ? args : {},
    outOfBand: execKey === 'exec-oob',
  };
}

export interface DispatchEnv {
  readonly registry: QmpCommandRegistry;
  readonly session: QmpSession;
  readonly client: QmpConnectionInfo;
  readonly signal: AbortSignal;
  readonly afterReply: (fn: () => void | Promise<void>) => void;
}

async function execute(env: DispatchEnv, value: JsonObject, id: QmpId): Promise<string> {
  const request = checkRequest(value, env.session.oob);
  const cmd = env.registry.get(request.command);
  if (!cmd || !(env.session.negotiated || cmd.allowedBeforeNegotiation)) {
    throw new QmpError(
      QmpErrorClass.CommandNotFound,
      `The command ${request.command} has not been found`,
    );
  }
  if (request.outOfBand && !cmd.oob) {
    throw genericError(`The command ${request.command} does not support OOB`);
  }
  const ctx: QmpCommandContext = {
    client: env.client,
    session: env.session,
    signal: env.signal,
    outOfBand: request.outOfBand,
    afterReply: env.afterReply,
  };
  const result = await cmd.run(request.args, ctx);
  try {
    return encodeReturn(result, id);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw genericError(`The command ${request.command} returned a value that is not JSON: ${why}`);
  }
}

/** The encoded reply to one parsed message. */
export async function dispatchRequest(env: DispatchEnv, value: JsonValue): Promise<string> {
  if (!isJsonObject(value)) {
    return encodeError(genericError('QMP input must be a JSON object'), undefined);
  }
  const id = requestId(value);
  try {
    return await execute(env, value, id);
  } catch (err) {
    let error = toQmpError(err);
    if (!env.session.negotiated && error.errorClass === QmpErrorClass.CommandNotFound) {
      // monitor_qmp_dispatch(): "Provide a more useful error message".
      error = new QmpError(QmpErrorClass.CommandNotFound, NEGOTIATION_EXPECTED);
    }
    return encodeError(error, id);
  }
}
