/**
 * Several devices with P2P, between two processes (qemu-migration.md §3.1, §3.2): three devices
 * write into each other's P2P windows while running; the source quiesces every device
 * (*_P2P) before any stops, the destination has every device in RUNNING_P2P before any runs;
 * no device initiates a P2P write while quiesced; and every write a target accepted on the
 * source is in the state the destination loaded — its window's counters, the initiators'
 * transmit counters, the digests — and the sequence numbers carry on after the switchover.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { VmProcess } from '../../src/cli/vm-process.ts';
import type { VfioInfo } from './harness.ts';
import { CAPS, E2e, digest, finished, sleep, smallGuest, waitFor } from './harness.ts';

// With switchover-ack: the destination waits for both PRE_COPY devices' initial data (two
// approvals; mtty needs none) before it acks.
const ACK = { ...CAPS, 'switchover-ack': true };
const P2P = 'p2p-rate=400,state-size=2M,chunk-size=16K,dirty-rate=1M,dma-rate=1M';

interface P2pTx {
  seq: number;
  from: string;
  to: string;
  'device-state': string;
  accepted: boolean;
}
interface P2pInfo {
  devices: {
    id: string;
    'tx-count': number;
    sent: P2pTx[];
    received: P2pTx[];
    dropped: { sent: number; received: number };
    'received-counters': { from: string | null; count: number; 'last-seq': number }[];
  }[];
}

const p2p = (vm: VmProcess) => vm.qmp.execute<P2pInfo>('x-query-p2p');

/** Each device's state log as "run state/migration status/device state", and the VM-wide order. */
async function stateLogs(vm: VmProcess) {
  const info = await vm.qmp.execute<VfioInfo>('x-query-vfio');
  const all = info.devices.flatMap((d) =>
    d['state-log'].map((e) => ({ id: d.id, seq: e.seq, state: e['device-state'], entry: e })),
  );
  const triplets = Object.fromEntries(
    info.devices.map((d) => [
      d.id,
      d['state-log'].map(
        (x) => `${x['run-state']}/${x['migration-status'] ?? '-'}/${x['device-state']}`,
      ),
    ]),
  );
  return { triplets, all: all.sort((a, b) => a.seq - b.seq) };
}

/** From `fromSeq` on: every device reaches one of `p2p` before any reaches one of `final`. */
function assertP2pFirst(
  all: { id: string; seq: number; state: string }[],
  fromSeq: number,
  ids: string[],
  final: string[],
): void {
  const later = all.filter((e) => e.seq >= fromSeq);
  const firstFinal = later.findIndex((e) => final.includes(e.state));
  assert.ok(firstFinal >= 0, 'a final state was reached');
  for (const id of ids) {
    const quiesced = later.findIndex((e) => e.id === id && e.state.endsWith('-p2p'));
    assert.ok(
      quiesced >= 0 && quiesced < firstFinal,
      `${id} was P2P-quiesced before any device went on: ${later.map((e) => `${e.id}:${e.state}`).join(' ')}`,
    );
  }
}

test('three devices doing P2P DMA: quiesced first on both sides, nothing lost, sequence numbers carry on', async (t) => {
  const e = new E2e(t);
  const ids = ['nic0', 'gpu0', 'mtty0'];
  const config = smallGuest({
    devices: [
      { id: 'nic0', model: `sim:nic,${P2P},flags=stop-copy+p2p+pre-copy` },
      { id: 'gpu0', model: `sim:gpu,${P2P},flags=stop-copy+p2p+pre-copy` },
      // No PRE_COPY: RUNNING -> RUNNING_P2P -> STOP, then STOP_COPY in save_complete.
      { id: 'mtty0', model: 'sim:mtty,flags=stop-copy+p2p' },
    ],
  });
  const { src, dst } = await e.pair(config, ACK);
  await sleep(300); // P2P traffic before the migration
  await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': 0 });
  await src.qmp.execute('migrate', { uri: dst.ready.incoming });
  assert.equal((await waitFor(src, finished, 'the end')).status, 'completed');
  await waitFor(dst, finished, 'the incoming side');
  const [a, b] = await Promise.all([digest(src), digest(dst)]);
  assert.equal(b.ram.sha256, a.ram.sha256, 'guest RAM');
  // mtty applies its image at RESUMING -> STOP, i.e. at `cont`: compare the record devices.
  assert.deepEqual(b.devices.slice(0, 2), a.devices.slice(0, 2), 'the P2P devices');

  // The source: who sent what, in which state, and what each target took.
  const before = await p2p(src);
  const [nic, gpu] = [before.devices[0]!, before.devices[1]!];
  for (const d of [nic, gpu]) {
    assert.equal(d.dropped.sent + d.dropped.received, 0);
    assert.ok(d.sent.length > 20, `${d.id} wrote into its peers`);
    for (const tx of d.sent) {
      assert.ok(
        ['RUNNING', 'PRE_COPY'].includes(tx['device-state']),
        `${d.id} sent in ${tx['device-state']}`,
      );
      assert.equal(tx.accepted, true, `${d.id} #${tx.seq} to ${tx.to} was taken`);
    }
    assert.ok(
      d.received.every((tx) => tx.accepted),
      `${d.id} lost no incoming write`,
    );
  }
  // The destination's loaded state holds exactly what each source target accepted.
  const after = await p2p(dst);
  for (const [i, d] of [nic, gpu].entries()) {
    const loaded = after.devices[i]!;
    assert.equal(loaded['tx-count'], d['tx-count'], `${d.id} transmit counter`);
    const expected = ['nic0', 'gpu0']
      .filter((from) => from !== d.id)
      .map((from) => {
        const got = d.received.filter((tx) => tx.from === from);
        return { from, count: got.length, 'last-seq': got.at(-1)!.seq };
      });
    const counters = loaded['received-counters'].map(({ from, count, 'last-seq': s }) => ({
      from,
      count,
      'last-seq': s,
    }));
    assert.deepEqual(counters, expected, `${d.id}: every accepted write, in its state`);
  }

  // Source stop: every device *_P2P before any STOP/STOP_COPY; destination start likewise.
  const s = await stateLogs(src);
  const stopAt = s.all.find((x) => x.entry['run-state'] === 'finish-migrate')!.seq;
  assertP2pFirst(s.all, stopAt, ids, ['stop', 'stop-copy']);
  assert.deepEqual(s.triplets.mtty0, [
    'prelaunch/-/running',
    'running/-/running-p2p',
    'running/-/running',
    'finish-migrate/active/running-p2p',
    'finish-migrate/active/stop',
    'finish-migrate/device/stop-copy',
    'postmigrate/completed/stop',
  ]);
  assert.deepEqual(s.triplets.nic0, [
    'prelaunch/-/running',
    'running/-/running-p2p',
    'running/-/running',
    'running/setup/pre-copy',
    'finish-migrate/active/pre-copy-p2p',
    'finish-migrate/active/stop-copy',
    'postmigrate/completed/stop',
  ]);
  // (Before the load the destination's devices ran, and wrote, on their own: not counted.)
  const loggedBefore = after.devices.map((x) => x.sent.length);
  await dst.qmp.execute('cont');
  const d = await stateLogs(dst);
  const startAt = d.all.find((x) => x.entry['run-state'] === 'running')!.seq;
  assertP2pFirst(d.all, startAt, ids, ['running']);
  for (const id of ids) {
    assert.deepEqual(d.triplets[id], [
      'inmigrate/-/running',
      'inmigrate/active/resuming',
      'running/completed/running-p2p',
      'running/completed/running',
    ]);
  }

  // The destination's devices carry on numbering where the source's stopped.
  await sleep(300);
  const resumed = await p2p(dst);
  for (const [i, dev] of [nic, gpu].entries()) {
    const sent = resumed.devices[i]!.sent.slice(loggedBefore[i]);
    assert.ok(sent.length > 0, `${dev.id} writes again`);
    assert.equal(sent[0]!.seq, dev['tx-count'], `${dev.id} continues its sequence`);
  }
});
