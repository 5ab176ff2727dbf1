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

/** A destination expecting one multifd channel, accepting on loopback TCP. */
async function accepting() {
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
  const accepted = acceptChannels(listener, new AbortController().signal, recv, () => undefined);
  const send = (bytes: Buffer) => {
    const s = netConnect(uri.port, uri.host);
    s.on('error', () => undefined);
    s.end(bytes);
  };
  const connection = `tcp 127\\.0\\.0\\.1:${uri.port} <- 127\\.0\\.0\\.1:\\d+`;
  const close = async () => {
    await recv.close(false);
    await listener.close();
  };
  return { accepted, send, connection, close };
}

test('a connection with an unknown magic is refused, naming the connection', async () => {
  const d = await accepting();
  d.send(Buffer.from('deadbeef00000000', 'hex'));
  await assert.rejects(
    d.accepted,
    new RegExp(`^Error: ${d.connection}: unknown channel magic: 0xdeadbeef$`),
  );
  await d.close();
});

test('a connection that ends inside its magic is refused, naming the connection', async () => {
  const d = await accepting();
  d.send(Buffer.from('1122', 'hex'));
  await assert.rejects(
    d.accepted,
    new RegExp(
      `^Error: ${d.connection}: unexpected end of stream at offset 2 while reading channel magic$`,
    ),
  );
  await d.close();
});
