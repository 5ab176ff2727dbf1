/**
 * Linux errno values used by the VFIO migration uAPI (vfio-uapi.md §11), and the one error
 * type every device backend throws. The number is the Linux x86-64 value so a report can be
 * compared with what a kernel driver returns.
 */
export const Errno = {
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EFAULT: 14,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  ESPIPE: 29,
  ENOMSG: 42,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
} as const;

export type ErrnoName = keyof typeof Errno;

export class VfioError extends Error {
  override readonly name = 'VfioError';
  readonly errno: number;
  readonly code: ErrnoName;
  /** What was refused and why, e.g. "SET STOP_COPY->PRE_COPY: blocked arc". */
  readonly detail: string;

  constructor(code: ErrnoName, detail: string) {
    super(`${code}: ${detail}`);
    this.code = code;
    this.detail = detail;
    this.errno = Errno[code];
  }
}

export function isVfioError(err: unknown, code?: ErrnoName): err is VfioError {
  return err instanceof VfioError && (code === undefined || err.code === code);
}

/** Throws `code` with `detail`; typed `never` so it ends control flow. */
export function fail(code: ErrnoName, detail: string): never {
  throw new VfioError(code, detail);
}
