/**
 * The two ends of the raw socket copy (raw-copy.ts), each in its own process, with the plain
 * Node idioms a program would use: 1 MiB writes honouring 'drain', and 'data' events.
 *
 *   raw-copy-child recv BYTES       listens on 127.0.0.1, prints {"port"}; once BYTES arrived
 *                                   prints {"done": true} and exits
 *   raw-copy-child send PORT BYTES  connects, prints {"ready": true}, waits for "go" on stdin,
 *                                   sends BYTES (one random 1 MiB chunk again and again)
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
  const server = createServer({ highWaterMark: HIGH_WATER_MARK }, (sock) => {
    let seen = 0;
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

async function send(port: number, bytes: number): Promise<void> {
  const chunk = randomFillSync(Buffer.alloc(CHUNK));
  // Node honours highWaterMark on connect (as transport/socket.ts uses it); the typings omit it.
  const sock = connect(
    Object.assign({ host: '127.0.0.1', port }, { highWaterMark: HIGH_WATER_MARK }),
  );
  // The receiver exits once it has everything: a reset then is the end, not a failure.
  sock.on('error', () => process.exit(0));
  await once(sock, 'connect');
  say({ ready: true });
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  await lines.next();
  for (let sent = 0; sent < bytes; sent += CHUNK) {
    const n = Math.min(CHUNK, bytes - sent);
    if (!sock.write(n === CHUNK ? chunk : chunk.subarray(0, n))) await once(sock, 'drain');
  }
  sock.end();
  await once(sock, 'close');
  process.exit(0);
}

const [mode, a, b] = process.argv.slice(2);
if (mode === 'recv' && Number.isSafeInteger(Number(a))) receive(Number(a));
else if (mode === 'send' && Number.isSafeInteger(Number(a)) && Number.isSafeInteger(Number(b))) {
  await send(Number(a), Number(b));
} else {
  process.stderr.write('usage: raw-copy-child recv BYTES | send PORT BYTES\n');
  process.exit(2);
}
