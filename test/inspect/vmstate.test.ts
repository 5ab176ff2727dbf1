import assert from 'node:assert/strict';
import { test } from 'node:test';
import { putGlobalState } from '../../src/migration/global-state.ts';
import { renderText } from '../../src/inspect/index.ts';
import type { InspectedSection } from '../../src/inspect/index.ts';
import { StreamBuilder, inspectBytes } from './streams.ts';

/** Offset of the payload of a START/FULL section of `idstr` at `at`. */
const payloadAt = (at: number, idstr: string) => at + 1 + 4 + 1 + idstr.length + 4 + 4;

test('timer v1 and v2, globalstate: values in the report and the listing', async () => {
  const ticks = Buffer.alloc(24);
  ticks.writeBigInt64BE(-5n, 0);
  ticks.writeBigInt64BE(123456789012345678n, 16);
  const b = new StreamBuilder()
    .header()
    .full(0, 'timer', (w) => w.putBuffer(ticks), 0, 2)
    .full(1, 'timer', (w) => w.putBuffer(ticks.subarray(0, 16)), 1, 1)
    .full(4, 'globalstate', (w) => putGlobalState(w, 'running'))
    .eof();
  const r = await inspectBytes(await b.bytes());
  assert.equal(r.error, null);
  assert.deepEqual(
    r.items.map((i) => (i as InspectedSection).payload),
    [
      { format: 'timer', cpuTicksOffset: '-5', cpuClockOffset: '123456789012345678' },
      { format: 'timer', cpuTicksOffset: '-5', cpuClockOffset: null },
      { format: 'globalstate', runState: 'running' },
    ],
  );
  const text = renderText(r);
  assert.match(
    text,
    /FULL +0 {2}timer \(instance 0, v2\) +cpu_ticks_offset -5, cpu_clock_offset 123456789012345678\n/,
  );
  assert.match(text, /FULL +1 {2}timer \(instance 1, v1\) +cpu_ticks_offset -5\n/);
  assert.match(text, /FULL +4 {2}globalstate \(instance 0, v1\) +run state 'running'\n/);
});

test('globalstate with a name that is no run state is refused, as QEMU refuses it', async () => {
  const b = new StreamBuilder().header().full(4, 'globalstate', (w) => {
    w.putBe32(7);
    w.putBuffer(Buffer.concat([Buffer.from('flying'), Buffer.alloc(94)]));
  });
  const r = await inspectBytes(await b.bytes());
  const end = payloadAt(b.offsets[0]!, 'globalstate') + 104;
  assert.deepEqual(r.error, {
    message: `section 'globalstate' (id 4) at offset ${end}: globalstate: 'flying' is not a run state`,
    offset: end,
  });
});

test('timer at an unknown version, globalstate in a START section', async () => {
  {
    const b = new StreamBuilder().header().full(0, 'timer', (w) => w.putBe64(0), 0, 3);
    const r = await inspectBytes(await b.bytes());
    assert.equal(
      r.error?.message,
      `cannot decode section 'timer' (id 0) at offset ${b.offsets[0]}: ` +
        'unknown payload format (timer version 3; known: version 1 and 2)',
    );
  }
  {
    const b = new StreamBuilder()
      .header()
      .start(4, 'globalstate', (w) => putGlobalState(w, 'running'));
    const r = await inspectBytes(await b.bytes());
    const at = payloadAt(b.offsets[0]!, 'globalstate');
    assert.equal(
      r.error?.message,
      `section 'globalstate' (id 4): globalstate payload at offset ${at}: ` +
        "a START section, 'globalstate' is FULL only",
    );
  }
});
