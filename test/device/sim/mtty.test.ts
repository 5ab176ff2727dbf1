/** mtty specifics: image layout, UART register semantics, activity only while running. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MttyModel } from '../../../src/device/sim/index.ts';
import { checkPortRecord, PortField, UartReg } from '../../../src/device/sim/mtty/uart.ts';
import { MigState } from '../../../src/uapi/index.ts';
import { concat, drain, makeDevice } from './helpers.ts';

test('the image is the 24-byte header plus 36 bytes per port, little-endian', async () => {
  const dev = makeDevice('mtty', 7, ',ports=3');
  const model = dev.model as MttyModel;
  model.portWrite(1, UartReg.FCR, 0x01);
  model.portWrite(1, UartReg.TX, 0x41);
  model.portWrite(1, UartReg.SCR, 0x5a);
  const image = concat(await drain((await dev.setState(MigState.STOP_COPY))!));
  assert.equal(image.length, 24 + 3 * 36);
  const dv = new DataView(image.buffer);
  assert.equal(dv.getBigUint64(0, true), 0x7e9d09898c3e2c4en);
  assert.deepEqual(
    [dv.getUint32(8, true), dv.getUint32(12, true), dv.getUint32(16, true), dv.getUint32(20, true)],
    [1, 0, 3, 0],
  );
  const port1 = image.subarray(24 + 36, 24 + 72);
  assert.equal(port1[PortField.FIFO], 0x41);
  assert.equal(port1[PortField.COUNT], 1);
  assert.equal(port1[PortField.HEAD], 1);
  assert.equal(port1[PortField.MAX_FIFO_SIZE], 16);
  assert.equal(port1[PortField.UART_REG + UartReg.SCR], 0x5a);
});

test('PRE_COPY holds only the header; STOP_COPY appends the ports', async () => {
  const dev = makeDevice('mtty', 7);
  const fd = (await dev.setState(MigState.PRE_COPY))!;
  assert.deepEqual(await fd.precopyInfo(), {
    argsz: 24,
    flags: 0,
    initialBytes: 24,
    dirtyBytes: 0,
  });
  assert.equal(concat(await drain(fd, 10)).length, 24);
  await dev.setState(MigState.PRE_COPY_P2P);
  await dev.setState(MigState.STOP_COPY);
  assert.equal(concat(await drain(fd)).length, 72);
});

test('UART loopback FIFO, DLAB divisor and the register rules of the sample', () => {
  const p = new Uint8Array(36);
  const model = new MttyModel({ ports: 1, activity: 0, seed: 1 });
  model.portWrite(0, UartReg.TX, 1);
  assert.equal(model.port(0)[PortField.OVERRUN], 1, 'no FIFO before FCR is written');
  model.portWrite(0, UartReg.FCR, 0x07);
  for (let i = 0; i < 20; i++) model.portWrite(0, UartReg.TX, i);
  assert.equal(model.port(0)[PortField.COUNT], 16);
  assert.equal(model.port(0)[PortField.OVERRUN], 1);
  model.portWrite(0, UartReg.FCR, 0x07); // clear
  model.portWrite(0, UartReg.TX, 0x33);
  assert.equal(model.portRead(0, UartReg.LSR) & 1, 1, 'data ready');
  assert.equal(model.portRead(0, UartReg.TX), 0x33);
  assert.equal(model.portRead(0, UartReg.LSR) & 0x60, 0x60, 'transmitter empty');
  model.portWrite(0, UartReg.LCR, 0x83);
  model.portWrite(0, UartReg.TX, 0x0c);
  model.portWrite(0, UartReg.IER, 0x01);
  assert.equal(model.portRead(0, UartReg.TX), 0x0c, 'divisor low through DLAB');
  assert.equal(model.portRead(0, UartReg.IER), 0x01, 'divisor high through DLAB');
  model.portWrite(0, UartReg.LCR, 0x03);
  assert.equal(checkPortRecord(model.port(0)), null, 'states made by the UART are plausible');
  assert.equal(checkPortRecord(p), null, 'power-on state is plausible');
});

test('activity changes ports only while running, deterministically', async () => {
  const a = makeDevice('mtty', 7, ',activity=500,seed=3');
  const b = makeDevice('mtty', 7, ',activity=500,seed=3');
  const d0 = await a.stateDigest();
  a.advance(100);
  b.advance(40);
  b.advance(60);
  assert.notEqual(await a.stateDigest(), d0);
  assert.equal(await a.stateDigest(), await b.stateDigest());
  for (let i = 0; i < 2; i++) assert.equal(checkPortRecord((a.model as MttyModel).port(i)), null);
  await a.setState(MigState.STOP);
  const stopped = await a.stateDigest();
  a.advance(1000);
  assert.equal(await a.stateDigest(), stopped);
});
