/**
 * Structure-aware mutations of a valid capture of what a loader reads (a migration stream, a
 * multifd channel): they aim at the bytes a loader must distrust (types, ids, magics, flags,
 * lengths, footers, order) as well as anywhere at random. The structure comes from whoever
 * made the capture (`inspect` for a stream, the packet layout for a multifd channel), so
 * mutations follow the real layout.
 */
export type Rng = () => number;

const int = (rng: Rng, n: number) => Math.floor(rng() * n);
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[int(rng, xs.length)]!;

/** A framed piece of a capture: a section, a packet with its payload. */
export interface Part {
  readonly offset: number;
  readonly length: number;
}

export interface Capture {
  readonly bytes: Buffer;
  /** The framed pieces, in order, each whole (at least one). */
  readonly parts: readonly Part[];
  /** Offsets of single bytes a reader must check: types, ids, magics, flags, footers. */
  readonly framing: readonly number[];
  /** Offsets of big-endian u32 lengths and counts (or the high half of a u64). */
  readonly lengths: readonly number[];
  /** Bytes before the first part: a stream's header, a channel's handshake. */
  readonly headerLength: number;
}

export type Mutator = (c: Capture, rng: Rng) => Buffer;

const copy = (c: Capture) => Buffer.from(c.bytes);

function randomBytes(rng: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = int(rng, 256);
  return b;
}

function flipAt(c: Capture, rng: Rng, at: number): Buffer {
  const b = copy(c);
  if (at < b.length) b[at] = b[at]! ^ (1 + int(rng, 255));
  return b;
}

const HUGE: readonly number[] = [0xffffffff, 0x7fffffff, 0x00000100, 0x80000000, 0x00ffffff];

export const MUTATORS: Readonly<Record<string, Mutator>> = {
  'flip any byte': (c, rng) => flipAt(c, rng, int(rng, c.bytes.length)),
  'flip a framing byte': (c, rng) => flipAt(c, rng, pick(rng, c.framing)),
  'flip a header byte': (c, rng) =>
    flipAt(c, rng, int(rng, Math.max(1, Math.min(c.bytes.length, c.headerLength, 64)))),
  truncate: (c, rng) => c.bytes.subarray(0, int(rng, c.bytes.length)),
  'truncate inside a part': (c, rng) => {
    const p = pick(rng, c.parts);
    return c.bytes.subarray(0, p.offset + int(rng, p.length));
  },
  'extend with garbage': (c, rng) => Buffer.concat([c.bytes, randomBytes(rng, 1 + int(rng, 4096))]),
  'huge length': (c, rng) => {
    const b = copy(c);
    const at = pick(rng, c.lengths);
    if (at + 4 <= b.length) b.writeUInt32BE(pick(rng, HUGE), at);
    return b;
  },
  'length off by one': (c, rng) => {
    const b = copy(c);
    const at = pick(rng, c.lengths);
    if (at + 4 <= b.length)
      b.writeUInt32BE((b.readUInt32BE(at) + (rng() < 0.5 ? 1 : -1)) >>> 0, at);
    return b;
  },
  'swap two parts': (c, rng) => {
    const a = pick(rng, c.parts);
    const z = pick(rng, c.parts);
    const [x, y] = a.offset < z.offset ? [a, z] : [z, a];
    if (x === y || x.offset + x.length > y.offset) return copy(c);
    const b = c.bytes;
    return Buffer.concat([
      b.subarray(0, x.offset),
      b.subarray(y.offset, y.offset + y.length),
      b.subarray(x.offset + x.length, y.offset),
      b.subarray(x.offset, x.offset + x.length),
      b.subarray(y.offset + y.length),
    ]);
  },
  'repeat a part': (c, rng) => {
    const p = pick(rng, c.parts);
    const b = c.bytes;
    const end = p.offset + p.length;
    return Buffer.concat([b.subarray(0, end), b.subarray(p.offset, end), b.subarray(end)]);
  },
  'drop a part': (c, rng) => {
    const p = pick(rng, c.parts);
    return Buffer.concat([c.bytes.subarray(0, p.offset), c.bytes.subarray(p.offset + p.length)]);
  },
  'random bytes after a valid header': (c, rng) =>
    Buffer.concat([c.bytes.subarray(0, c.headerLength), randomBytes(rng, int(rng, 8192))]),
  'random bytes': (_c, rng) => randomBytes(rng, int(rng, 4096)),
};
