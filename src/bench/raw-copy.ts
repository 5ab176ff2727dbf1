/**
 * (b) of the RAM benchmark: the same number of bytes copied through a loopback TCP socket
 * between two fresh Node processes, timed from "go" to the receiver's last byte. It is what
 * Node itself reaches on this machine, the yardstick for our migration. With `sockets` > 1 the
 * bytes are split evenly over that many connections sent in parallel (the yardstick for multifd).
 */
import { BenchChild } from './child.ts';

export async function rawCopySeconds(
  bytes: number,
  timeoutMs: number,
  sockets = 1,
): Promise<number> {
  const receiver = new BenchChild('raw copy receiver', 'raw-copy-child', ['recv', String(bytes)]);
  let sender: BenchChild | null = null;
  try {
    const { port } = await receiver.next();
    sender = new BenchChild('raw copy sender', 'raw-copy-child', [
      'send',
      String(port),
      String(bytes),
      String(sockets),
    ]);
    await sender.next();
    const t0 = performance.now();
    sender.say('go');
    await receiver.next(timeoutMs);
    return (performance.now() - t0) / 1000;
  } finally {
    receiver.kill();
    sender?.kill();
  }
}
