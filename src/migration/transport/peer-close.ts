/**
 * How a channel ended, as far as this side can tell: the peer closed it (an end of stream),
 * the peer reset it (ECONNRESET), or it was lost otherwise (closed or aborted here, any other
 * error). At the end of a migration this is what tells a side whether its peer gave up: a
 * destination that closes or resets the channel before its SHUT has not run the guest.
 */
import type { MigrationConnection } from './connection.ts';

export type ChannelEnd = 'end' | 'reset' | 'lost';

/** Starts watching `conn`; the function returns how it ended (the first sign), or null. */
export function watchChannelEnd(conn: MigrationConnection): () => ChannelEnd | null {
  let ended: ChannelEnd | null = null;
  const r = conn.readable;
  r?.once('end', () => (ended ??= 'end'));
  r?.once('error', (err: NodeJS.ErrnoException) => {
    ended ??= err.code === 'ECONNRESET' ? 'reset' : 'lost';
  });
  r?.once('close', () => (ended ??= 'lost'));
  return () => ended;
}

/** The peer ended the channel itself (closed or reset it). */
export function endedByPeer(end: ChannelEnd | null): boolean {
  return end === 'end' || end === 'reset';
}
