/**
 * Stream codec throughput: 4 KiB RAM page records (QEMU "ram" format, CONTINUE headers)
 * written by QEMUFileWriter into a sink that releases chunks at once, and read back by
 * QEMUFileReader + RamRecordDecoder straight into a guest-memory buffer. The input is split
 * into 64 KiB chunks, as a socket delivers it. A plain memcpy of the same bytes is the
 * baseline. Median of 7 trials after a warm-up.
 *
 *   npx tsx bench/stream-codec.ts [MiB]        (default 256 MiB per trial)
 */
import { QEMUFileReader, QEMUFileWriter } from '../src/migration/stream/index.ts';
import type { ByteSink } from '../src/migration/stream/index.ts';
import {
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_PAGE,
  RamRecordDecoder,
  RamRecordEncoder,
} from '../src/migration/ram/format.ts';

const PAGE = 4096;
const MIB = Number(process.argv[2] ?? 256);
const GUEST = 64 << 20; // pages wrap around a 64 MiB guest
const PAGES = (MIB << 20) / PAGE;
const TRIALS = 7;

const guest = Buffer.alloc(GUEST);
for (let i = 0; i < GUEST; i += 8) guest.writeUInt32LE(i, i);

class CountingSink implements ByteSink {
  bytes = 0;
  write(chunk: Uint8Array): Promise<void> {
    this.bytes += chunk.length;
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Collects chunks split at 64 KiB, for the reader benchmark. */
class SocketLikeSink implements ByteSink {
  readonly chunks: Buffer[] = [];
  write(chunk: Uint8Array): Promise<void> {
    for (let at = 0; at < chunk.length; at += 64 << 10) {
      this.chunks.push(Buffer.from(chunk.subarray(at, Math.min(chunk.length, at + (64 << 10)))));
    }
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function writePages(sink: ByteSink, pages: number): Promise<number> {
  const w = new QEMUFileWriter(sink);
  const enc = new RamRecordEncoder();
  for (let i = 0; i < pages; i++) {
    const off = (i * PAGE) % GUEST;
    enc.putPage(w, 'pc.ram', off, guest.subarray(off, off + PAGE));
    if (w.needsDrain) await w.ready();
  }
  enc.putEos(w);
  await w.flush();
  return w.bytesWritten;
}

async function readPages(chunks: readonly Buffer[], into: Buffer): Promise<number> {
  const r = new QEMUFileReader(null, { highWaterMark: 1 << 30 });
  for (const c of chunks) r.push(c);
  r.end();
  const dec = new RamRecordDecoder();
  let pages = 0;
  for (;;) {
    const kind = dec.tryReadRecord(r) ?? (await dec.readRecord(r));
    if (kind === RAM_SAVE_FLAG_EOS) break;
    if (kind !== RAM_SAVE_FLAG_PAGE) throw new Error(`unexpected record ${kind}`);
    const dst = into.subarray(dec.offset, dec.offset + PAGE);
    if (!r.tryReadInto(dst)) await r.readInto(dst);
    pages++;
  }
  return pages;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

async function trial(fn: () => Promise<number> | number): Promise<{ gbps: number; bytes: number }> {
  const t0 = process.hrtime.bigint();
  const bytes = await fn();
  const ns = Number(process.hrtime.bigint() - t0);
  return { gbps: bytes / ns, bytes };
}

async function measure(name: string, fn: () => Promise<number> | number): Promise<number> {
  await trial(fn); // warm-up
  const runs: number[] = [];
  for (let i = 0; i < TRIALS; i++) runs.push((await trial(fn)).gbps);
  const m = median(runs);
  const spread = `${Math.min(...runs).toFixed(2)}–${Math.max(...runs).toFixed(2)}`;
  console.log(`${name.padEnd(34)} ${m.toFixed(2)} GB/s  (range ${spread})`);
  return m;
}

console.log(`node ${process.version}, ${MIB} MiB of 4 KiB page records per trial`);
const socketLike = new SocketLikeSink();
const streamBytes = await writePages(socketLike, PAGES);
const into = Buffer.alloc(GUEST);
const flat = Buffer.concat(socketLike.chunks);

const copy = await measure('baseline: memcpy of the stream', () => {
  for (let at = 0; at < flat.length; at += GUEST) {
    flat.copy(into, 0, at, Math.min(flat.length, at + GUEST));
  }
  return flat.length;
});
const write = await measure('writer: page records -> sink', () =>
  writePages(new CountingSink(), PAGES),
);
const read = await measure('reader: 64 KiB chunks -> guest RAM', async () => {
  const pages = await readPages(socketLike.chunks, into);
  if (pages !== PAGES) throw new Error(`decoded ${pages} pages, expected ${PAGES}`);
  return streamBytes;
});
if (!into.equals(guest)) throw new Error('decoded guest memory differs');
console.log(
  `ratios to memcpy: writer ${(write / copy).toFixed(2)}, reader ${(read / copy).toFixed(2)}`,
);
