/**
 * Structure-aware mutations of a valid migration stream: they aim at the bytes a loader must
 * distrust (types, ids, lengths, footers, order) as well as anywhere at random. The structure
 * comes from `inspect`, so mutations follow the real layout of the capture.
 */
import type { InspectReport, InspectedSection } from '../../src/inspect/index.ts';

export type Rng = () => number;

const int = (rng: Rng, n: number) => Math.floor(rng() * n);
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[int(rng, xs.length)]!;

/** The DEV_DATA_STATE delimiter: a u64 size follows it. */
const DEV_DATA_STATE = Buffer.from('ffffffffef100004', 'hex');

export interface Capture {
  readonly bytes: Buffer;
  readonly report: InspectReport;
  readonly sections: readonly InspectedSection[];
  /** Offsets of VFIO DEV_DATA_STATE size fields. */
  readonly dataSizes: readonly number[];
}

export function capture(bytes: Buffer, report: InspectReport): Capture {
  const sections = report.items.filter((i): i is InspectedSection => i.item === 'section');
  const dataSizes: number[] = [];
  for (
    let at = bytes.indexOf(DEV_DATA_STATE);
    at >= 0;
    at = bytes.indexOf(DEV_DATA_STATE, at + 1)
  ) {
    dataSizes.push(at + 8);
  }
  return { bytes, report, sections, dataSizes };
}

export type Mutator = (c: Capture, rng: Rng) => Buffer;

const copy = (c: Capture) => Buffer.from(c.bytes);

function randomBytes(rng: Rng, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = int(rng, 256);
  return b;
}

/** Offsets of one section's framing bytes: type, id, idstr length, footer. */
function framing(s: InspectedSection): number[] {
  const at = [s.offset, s.offset + 1, s.offset + 4];
  if (s.type === 'START' || s.type === 'FULL') at.push(s.offset + 5);
  if (s.complete) at.push(s.offset + s.length - 5, s.offset + s.length - 1);
  return at;
}

const HUGE: readonly (readonly number[])[] = [
  [0xff, 0xff, 0xff, 0xff],
  [0x7f, 0xff, 0xff, 0xff],
  [0x00, 0x00, 0x01, 0x00],
  [0x80, 0x00, 0x00, 0x00],
];

export const MUTATORS: Readonly<Record<string, Mutator>> = {
  'flip any byte': (c, rng) => {
    const b = copy(c);
    const at = int(rng, b.length);
    b[at] = b[at]! ^ (1 + int(rng, 255));
    return b;
  },
  'flip a framing byte': (c, rng) => {
    const b = copy(c);
    const at = pick(rng, framing(pick(rng, c.sections)));
    b[at] = b[at]! ^ (1 + int(rng, 255));
    return b;
  },
  'flip a header byte': (c, rng) => {
    const b = copy(c);
    const at = int(rng, Math.min(b.length, 64));
    b[at] = b[at]! ^ (1 + int(rng, 255));
    return b;
  },
  truncate: (c, rng) => c.bytes.subarray(0, int(rng, c.bytes.length)),
  'truncate inside a section': (c, rng) => {
    const s = pick(rng, c.sections);
    return c.bytes.subarray(0, s.offset + int(rng, s.length));
  },
  'extend with garbage': (c, rng) => Buffer.concat([c.bytes, randomBytes(rng, 1 + int(rng, 4096))]),
  'huge length': (c, rng) => {
    const b = copy(c);
    const targets: number[] = [9]; // configuration name length (after magic, version, 0x07)
    if (c.report.vmdesc) targets.push(c.report.vmdesc.offset + 1);
    for (const s of c.sections)
      if (s.type === 'START' || s.type === 'FULL') targets.push(s.offset + 5);
    targets.push(...c.dataSizes, ...c.dataSizes.map((d) => d + 4));
    const at = pick(rng, targets);
    const huge = pick(rng, HUGE);
    for (let i = 0; i < huge.length && at + i < b.length; i++) b[at + i] = huge[i]!;
    return b;
  },
  'swap two sections': (c, rng) => {
    const a = pick(rng, c.sections);
    const z = pick(rng, c.sections);
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
  'repeat a section': (c, rng) => {
    const s = pick(rng, c.sections);
    const b = c.bytes;
    const end = s.offset + s.length;
    return Buffer.concat([b.subarray(0, end), b.subarray(s.offset, end), b.subarray(end)]);
  },
  'drop a section': (c, rng) => {
    const s = pick(rng, c.sections);
    return Buffer.concat([c.bytes.subarray(0, s.offset), c.bytes.subarray(s.offset + s.length)]);
  },
  'random bytes after a valid header': (c, rng) =>
    Buffer.concat([
      c.bytes.subarray(0, c.sections[0]?.offset ?? 8),
      randomBytes(rng, int(rng, 8192)),
    ]),
  'random bytes': (_c, rng) => randomBytes(rng, int(rng, 4096)),
};
