/**
 * The two ends of the raw socket copy (raw-copy.ts), each in its own process, with the plain
 * Node idioms a program would use: 1 MiB writes honouring 'drain', and 'data' events.
 *
 *   raw-copy-child recv BYTES          listens on 127.0.0.1, prints {"port"}; once BYTES
 *                                      arrived, over any number of connections, prints
 *                                      {"done": true} and exits
 *   raw-copy-child send PORT BYTES [N]  opens N connections (default 1), prints
 *                                      {"ready": true}, waits for "go" on stdin, sends BYTES
 *                                      split evenly over them in parallel (one random 1 MiB
 *                                      chunk again and again)
 */
import { randomFillSync } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { createInterface } from 'node:readline';

const CHUNK = 1 << 20;
const HIGH_WATER_MARK = 1 << 20;

function say(value: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function receive(bytes: number): void {
  let seen = 0;
  const server = createServer({ highWaterMark: HIGH_WATER_MARK }, (sock) => {
    sock.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen >= bytes) {
        say({ done: true, bytes: seen });
        process.exit(0);
      }
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address();
    say({ port: typeof addr === 'object' && addr !== null ? addr.port : 0 });
  });
}

async function send(port: number, bytes: number, sockets: number): Promise<void> {
  const chunk = randomFillSync(Buffer.alloc(CHUNK));
  // The receiver exits once it has everything: a reset then is the end, not a failure.
  const socks = await Promise.all(
    Array.from({ length: sockets }, async () => {
      // Node honours highWaterMark on connect (as transport/socket.ts uses it); the typings omit it.
      const sock = connect(
        Object.assign({ host: '127.0.0.1', port }, { highWaterMark: HIGH_WATER_MARK }),
      );
      sock.on('error', () => process.exit(0));
      await once(sock, 'connect');
      return sock;
    }),
  );
  say({ ready: true });
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  await lines.next();
  // Whole chunks dealt out evenly; the first socket takes the remainder.
  const chunks = Math.ceil(bytes / CHUNK);
  await Promise.all(
    socks.map(async (sock, i) => {
      for (let c = i; c < chunks; c += sockets) {
        const n = Math.min(CHUNK, bytes - c * CHUNK);
        if (!sock.write(n === CHUNK ? chunk : chunk.subarray(0, n))) await once(sock, 'drain');
      }
      sock.end();
      await once(sock, 'close');
    }),
  );
  process.exit(0);
}

const [mode, a, b, c = '1'] = process.argv.slice(2);
const count = (t: string | undefined) => Number.isSafeInteger(Number(t)) && Number(t) > 0;
if (mode === 'recv' && count(a)) receive(Number(a));
else if (mode === 'send' && count(a) && count(b) && count(c)) {
  await send(Number(a), Number(b), Number(c));
} else {
  process.stderr.write('usage: raw-copy-child recv BYTES | send PORT BYTES [SOCKETS]\n');
  process.exit(2);
}
