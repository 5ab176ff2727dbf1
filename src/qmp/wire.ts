/**
 * What the server writes: one JSON object per message, each followed by "\r\n" as QEMU's
 * monitor does (monitor_puts turns '\n' into "\r\n"). Member order follows QEMU 7.2's output:
 * `{"return", "id"}`, `{"id", "error"}`, `{"timestamp", "event", "data"}` (toolchain.md §5).
 */
import type { QmpError } from './errors.ts';
import type { JsonValue } from './json-parser.ts';

export const QMP_EOL = '\r\n';

export interface QmpVersionTriple {
  major: number;
  minor: number;
  micro: number;
}

/** The `query-version` result, also the greeting's `version`. */
export interface QmpVersionInfo {
  qemu: QmpVersionTriple;
  package: string;
}

export interface QmpGreeting {
  QMP: { version: QmpVersionInfo; capabilities: string[] };
}

export interface QmpTimestamp {
  seconds: number;
  microseconds: number;
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: QmpTimestamp;
}

/** A request id as sent by the client; `undefined` when the request had none. */
export type QmpId = JsonValue | undefined;

export function versionInfo(version: QmpVersionTriple, pkg: string): QmpVersionInfo {
  return {
    qemu: { micro: version.micro, minor: version.minor, major: version.major },
    package: pkg,
  };
}

export function encodeGreeting(version: QmpVersionInfo, capabilities: readonly string[]): string {
  const greeting: QmpGreeting = { QMP: { version, capabilities: [...capabilities] } };
  return JSON.stringify(greeting) + QMP_EOL;
}

/** A success reply; throws TypeError when `value` cannot be written as JSON. */
export function encodeReturn(value: unknown, id: QmpId): string {
  // QEMU answers `{}` for commands that return nothing.
  const text = JSON.stringify(value ?? {}) as string | undefined;
  if (text === undefined) throw new TypeError(`a ${typeof value} is not JSON`);
  const idText = id === undefined ? '' : `,"id":${JSON.stringify(id)}`;
  return `{"return":${text}${idText}}${QMP_EOL}`;
}

export function encodeError(err: QmpError, id: QmpId): string {
  return JSON.stringify({ id, error: { class: err.errorClass, desc: err.desc } }) + QMP_EOL;
}

/** Microseconds since the Unix epoch -> QMP's split timestamp. */
export function timestampOf(epochMicros: number): QmpTimestamp {
  const us = Math.max(0, Math.floor(epochMicros));
  return { seconds: Math.floor(us / 1e6), microseconds: us % 1e6 };
}

export function encodeEvent(
  event: string,
  data: Record<string, unknown> | undefined,
  timestamp: QmpTimestamp,
): string {
  return JSON.stringify({ timestamp, event, data }) + QMP_EOL;
}

/** Wall-clock microseconds since the epoch, finer than Date.now() (QEMU: g_get_real_time). */
export function wallClockMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}
