/**
 * QMP error replies: `{"error": {"class": C, "desc": D}}`. The classes are QEMU's
 * `QapiErrorClass` values; almost everything is GenericError, and CommandNotFound marks an
 * unknown command or one not available before capabilities negotiation (toolchain.md §5).
 */
export const QmpErrorClass = {
  GenericError: 'GenericError',
  CommandNotFound: 'CommandNotFound',
  DeviceNotActive: 'DeviceNotActive',
  DeviceNotFound: 'DeviceNotFound',
  KVMMissingCap: 'KVMMissingCap',
} as const;

export type QmpErrorClassName = (typeof QmpErrorClass)[keyof typeof QmpErrorClass];

/** A QMP error: thrown by command handlers, and rejected by the client on an error reply. */
export class QmpError extends Error {
  override readonly name = 'QmpError';
  /** QEMU's error class, e.g. "GenericError"; a string so that unknown classes survive. */
  readonly errorClass: string;
  /** The human-readable description, sent verbatim as `desc`. */
  readonly desc: string;

  constructor(errorClass: string, desc: string) {
    super(`${errorClass}: ${desc}`);
    this.errorClass = errorClass;
    this.desc = desc;
  }
}

/** A GenericError, the class QEMU uses for nearly every failure. */
export function genericError(desc: string): QmpError {
  return new QmpError(QmpErrorClass.GenericError, desc);
}

/** What any thrown value becomes on the wire: QmpError as is, anything else a GenericError. */
export function toQmpError(err: unknown): QmpError {
  if (err instanceof QmpError) return err;
  if (err instanceof Error) return genericError(err.message || err.name);
  return genericError(String(err));
}
