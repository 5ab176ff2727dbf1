/**
 * Peer-to-peer DMA between simulated devices: activity writes into peers' P2P windows; both
 * sides log each transaction with the initiator's sequence number; a P2P-quiesced device
 * initiates nothing but still takes peer writes; a stopped one loses them; the window's
 * counters are device state, so a restored device holds exactly what the source accepted.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { RecordModel, SimDevice } from '../../../src/device/sim/index.ts';
import {
  P2P_LANDING_SIZE,
  P2P_WINDOW_SIZE,
  P2P_WRITE_SIZE,
  p2pInitiatorKey,
} from '../../../src/device/sim/index.ts';
import type { P2pTransaction } from '../../../src/device/sim/index.ts';
import { MigState, isP2PQuiescedState, stateName } from '../../../src/uapi/index.ts';
import { liveSave, makeDevice, writeChunked } from './helpers.ts';

const P2P = ',p2p-rate=2000';

/** Three nics, each a peer of the two others. */
function trio(extra = ''): SimDevice[] {
  const devs = [0, 1, 2].map((i) =>
    makeDevice('nic', 7, `${P2P},seed=${i + 1}${extra}`, `nic${i}`),
  );
  for (const a of devs) for (const b of devs) if (a !== b) a.connectPeer(b);
  return devs;
}

/** What `target`'s log says it accepted from `from`: count and last sequence number. */
function acceptedFrom(target: SimDevice, from: string): { count: number; lastSeq: number } {
  const got = target.p2pLog.received.filter((t) => t.from === from && t.accepted);
  return { count: got.length, lastSeq: got.at(-1)?.seq ?? 0 };
}

/** The target's state counters for `from`, in the same shape (absent: none). */
function stateCounter(target: SimDevice, from: string): { count: number; lastSeq: number } {
  const c = target.p2pReceivedCounters().find((x) => x.key === p2pInitiatorKey(from));
  return { count: c?.count ?? 0, lastSeq: c?.lastSeq ?? 0 };
}

const key = (t: P2pTransaction): string => `${t.from}>${t.to}#${t.seq}`;

test('running devices write into each other; both logs and the state counters agree', () => {
  const devs = trio();
  for (let i = 0; i < 20; i++) for (const d of devs) d.advance(5);
  for (const d of devs) {
    assert.ok(d.p2pLog.sent.length > 100, `${d.id} initiated P2P writes`);
    assert.equal(d.p2pTxCount, d.p2pLog.sent.length, 'the state counts what it sent');
    assert.deepEqual(
      d.p2pLog.sent.map((t) => t.seq),
      d.p2pLog.sent.map((_, i) => i),
      'sequence numbers count up from 0',
    );
    for (const t of d.p2pLog.sent) {
      assert.equal(t.accepted, true);
      assert.equal(t.length, P2P_WRITE_SIZE);
      assert.ok(t.offset % P2P_WRITE_SIZE === 0 && t.offset + t.length <= P2P_LANDING_SIZE);
    }
  }
  const sent = devs.flatMap((d) => d.p2pLog.sent.map(key)).sort();
  const received = devs.flatMap((d) => d.p2pLog.received.map(key)).sort();
  assert.deepEqual(received, sent, 'every write sent was received, once');
  for (const target of devs) {
    for (const from of devs) {
      if (from === target) continue;
      assert.deepEqual(stateCounter(target, from.id), acceptedFrom(target, from.id));
    }
  }
});

test('a P2P-quiesced device initiates nothing but still takes writes; a stopped one loses them', async () => {
  const [a, b, c] = trio();
  await a!.setState(MigState.RUNNING_P2P);
  await c!.setState(MigState.STOP);
  const sentBefore = a!.p2pLog.sent.length;
  for (let i = 0; i < 10; i++) for (const d of [a!, b!, c!]) d.advance(5);
  assert.equal(a!.p2pLog.sent.length, sentBefore, 'RUNNING_P2P initiates no P2P');
  const intoA = a!.p2pLog.received.filter((t) => t.from === 'nic1');
  assert.ok(intoA.length > 0 && intoA.every((t) => t.accepted && t.state === MigState.RUNNING_P2P));
  const intoC = c!.p2pLog.received;
  assert.ok(intoC.length > 0, 'b kept writing to c');
  assert.ok(
    intoC.every((t) => !t.accepted && t.state === MigState.STOP),
    'lost in STOP',
  );
  assert.deepEqual(stateCounter(c!, 'nic1'), { count: 0, lastSeq: 0 });
  assert.throws(() => a!.initiatePeerWrite(b!, 0, new Uint8Array(8)), /P2P-quiesced/);
});

test('the P2P window travels with the state: a restored device holds what the source accepted', async () => {
  const [a, b, c] = trio();
  for (let i = 0; i < 10; i++) for (const d of [a!, b!, c!]) d.advance(5);
  // b and c quiesce first (the P2P rule), then a is saved live while they keep answering.
  await b!.setState(MigState.RUNNING_P2P);
  await c!.setState(MigState.RUNNING_P2P);
  const { stream, digest } = await liveSave(a!, { rounds: 10, stepMs: 5 });
  const dst = makeDevice('nic', 7, `${P2P},seed=9`, 'nic0');
  const fd = (await dst.setState(MigState.RESUMING))!;
  await writeChunked(fd, stream, [4096, 65536, 777]);
  await dst.setState(MigState.STOP);
  await dst.loadConfig(await a!.saveConfig());
  assert.equal(await dst.stateDigest(), digest);
  for (const from of ['nic1', 'nic2']) {
    assert.deepEqual(stateCounter(dst, from), acceptedFrom(a!, from), `from ${from}`);
    assert.ok(stateCounter(dst, from).count > 0);
  }
  assert.equal(dst.p2pTxCount, a!.p2pTxCount, 'the transmit counter continues');
});

test('device activity never rewrites the P2P window, and rewrites the rest', () => {
  const lone = makeDevice('nic', 7, `${P2P},dirty-rate=64M,state-size=64K,chunk-size=4K`);
  const bytes = (lone.model as RecordModel).state.bytes;
  const window = bytes.length - P2P_WINDOW_SIZE;
  const before = bytes.slice();
  for (let i = 0; i < 50; i++) lone.advance(10);
  assert.deepEqual(bytes.subarray(window), before.subarray(window));
  assert.notDeepEqual(
    bytes.subarray(window - 4096, window),
    before.subarray(window - 4096, window),
  );
  assert.equal(lone.p2pTxCount, 0, 'no peer, nothing sent');
  assert.deepEqual(lone.p2pReceivedCounters(), []);
});

test('property: no transaction is initiated while quiesced, and the state counts every accepted one', async () => {
  const states = [MigState.RUNNING, MigState.RUNNING_P2P, MigState.STOP] as const;
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.constantFrom(...states), fc.nat(20)), {
        minLength: 1,
        maxLength: 25,
      }),
      async (steps) => {
        const devs = trio(',state-size=64K,chunk-size=16K');
        for (const [who, state, ms] of steps) {
          await devs[who]!.setState(state);
          for (const d of devs) d.advance(ms);
        }
        for (const d of devs) {
          for (const t of d.p2pLog.sent) {
            assert.ok(!isP2PQuiescedState(t.state), `${d.id} sent in ${stateName(t.state)}`);
          }
          for (const from of devs) {
            if (from !== d) assert.deepEqual(stateCounter(d, from.id), acceptedFrom(d, from.id));
          }
        }
      },
    ),
    { numRuns: 40, seed: 11 },
  );
});
