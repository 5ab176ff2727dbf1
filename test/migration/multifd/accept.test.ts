/**
 * How a destination tells its channels apart (accept.ts): a connection that is neither the
 * main channel nor a multifd channel is refused with QEMU's message and the connection it
 * came on (found by the multifd fuzz target: the message named no connection).
 */
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { test } from 'node:test';
import { GuestMemory, TARGET_PAGE_SIZE } from '../../../src/memory/index.ts';
import { acceptChannels } from '../../../src/migration/multifd/accept.ts';
import { MultifdRecvState } from '../../../src/migration/multifd/recv.ts';
import { RamLoadState } from '../../../src/migration/ram/load.ts';
import { listen } from '../../../src/migration/transport/index.ts';

test('a connection with an unknown magic is refused, naming the connection', async () => {
  const listener = await listen('tcp:127.0.0.1:0');
  const uri = listener.uri;
  if (uri.transport !== 'tcp') throw new Error('tcp expected');
  const recv = new MultifdRecvState({
    channels: 1,
    uuid: Buffer.alloc(16),
    pageSize: TARGET_PAGE_SIZE,
    ram: new RamLoadState(GuestMemory.flat([{ idstr: 'ram', size: 64 << 10 }])),
    deviceState: () => Promise.resolve(),
    onError: () => undefined,
  });
  const accepting = acceptChannels(listener, new AbortController().signal, recv, () => undefined);
  const s = netConnect(uri.port, uri.host);
  s.on('error', () => undefined);
  s.end(Buffer.from('deadbeef00000000', 'hex'));
  await assert.rejects(
    accepting,
    new RegExp(
      `^Error: tcp 127\\.0\\.0\\.1:${uri.port} <- 127\\.0\\.0\\.1:\\d+: unknown channel magic: 0xdeadbeef$`,
    ),
  );
  await recv.close(false);
  await listener.close();
});
