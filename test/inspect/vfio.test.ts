import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RamRecordEncoder } from '../../src/migration/ram/format.ts';
import {
  MIG_CMD_OPEN_RETURN_PATH,
  MIG_CMD_PING,
  MIG_CMD_SWITCHOVER_START,
  u32Payload,
  vmdescOf,
  vmdescOldStyleDevice,
} from '../../src/migration/stream/index.ts';
import type { QEMUFileWriter } from '../../src/migration/stream/index.ts';
import { renderText } from '../../src/inspect/index.ts';
import type { InspectReport, InspectedSection, VfioPayload } from '../../src/inspect/index.ts';
import { StreamBuilder, inspectBytes, vfio } from './streams.ts';

const RAM = 2;
const GPU = 3;
const NIC = 4;
const MFD = 5;
const GPU_ID = '0000:00:05.0/vfio';
const NIC_ID = '0000:00:06.0/vfio';
const PAGE = Buffer.alloc(4096, 0x11);

/**
 * A precopy migration of one RAM block and three devices, as QEMU orders it (§2.1, §2.4):
 * - GPU: PRE_COPY with switchover-ack: setup, three iterations with a data record each (the
 *   second one ends with DEV_INIT_DATA_SENT), two records in stop-copy, config;
 * - NIC: no PRE_COPY, so no PART sections: setup, one record in stop-copy, config;
 * - bare "vfio" in multifd mode (§4.6): setup, one iteration, dummy EOS, CONFIG_LOAD_READY.
 */
async function precopyStream(): Promise<{ bytes: Buffer; offsets: number[] }> {
  const ram = new RamRecordEncoder();
  const ramPart = (w: QEMUFileWriter, first: number) => {
    ram.putPage(w, 'pc.ram', first * 4096, PAGE);
    ram.putZeroPage(w, 'pc.ram', (first + 1) * 4096);
    ram.putZeroPage(w, 'pc.ram', (first + 2) * 4096);
    ram.putEos(w);
  };
  const b = new StreamBuilder()
    .header()
    .command(MIG_CMD_OPEN_RETURN_PATH)
    .command(MIG_CMD_PING, u32Payload(1))
    .start(RAM, 'ram', (w) => {
      ram.putMemSize(w, [
        { idstr: 'pc.ram', usedLength: 1 << 20 },
        { idstr: 'vga.vram', usedLength: 64 << 10 },
      ]);
      ram.putEos(w);
    })
    .start(GPU, GPU_ID, vfio.setup)
    .start(NIC, NIC_ID, vfio.setup)
    .start(MFD, 'vfio', vfio.setup);
  for (let i = 0; i < 3; i++) {
    b.part(RAM, (w) => ramPart(w, i * 3))
      .part(GPU, (w) => {
        vfio.data(w, 1000 + i);
        if (i === 1) vfio.initDataSent(w);
        else vfio.endOfState(w);
      })
      .part(MFD, (w) => {
        vfio.data(w, 10);
        vfio.endOfState(w);
      });
  }
  b.command(MIG_CMD_SWITCHOVER_START)
    .end(RAM, (w) => {
      ram.putPage(w, 'vga.vram', 0, PAGE);
      ram.putEos(w);
    })
    .end(GPU, (w) => {
      vfio.data(w, 4096);
      vfio.data(w, 100);
      vfio.endOfState(w);
    })
    .end(NIC, (w) => {
      vfio.data(w, 2048);
      vfio.endOfState(w);
    })
    .end(MFD, vfio.endOfState)
    .full(GPU, GPU_ID, (w) => vfio.config(w, 256))
    .full(NIC, NIC_ID, (w) => vfio.config(w, 64))
    .full(MFD, 'vfio', vfio.configLoadReady)
    .eof(
      vmdescOf(4096, [
        vmdescOldStyleDevice(GPU_ID, 0, 256 + 20),
        vmdescOldStyleDevice(NIC_ID, 0, 64 + 20),
        vmdescOldStyleDevice('vfio', 0, 8),
      ]),
    );
  return { bytes: await b.bytes(), offsets: b.offsets };
}

function vfioPayloads(r: InspectReport, idstr: string): [string, VfioPayload][] {
  return r.items
    .filter((i): i is InspectedSection => i.item === 'section' && i.idstr === idstr)
    .map((s) => [s.type, s.payload as VfioPayload]);
}

function payload(
  setup: boolean,
  dataRecords: number,
  dataBytes: number,
  configBytes: number | null,
  end: VfioPayload['end'],
): VfioPayload {
  return { format: 'vfio', setup, dataRecords, dataBytes, configBytes, end };
}

test('VFIO sections: each record kind decodes into its section summary', async () => {
  const { bytes, offsets } = await precopyStream();
  const r = await inspectBytes(bytes);
  assert.equal(r.error, null);
  assert.equal(r.size, bytes.length);
  assert.deepEqual(
    r.items.map((i) => i.offset),
    offsets.slice(0, -2),
    'every item starts where it was written',
  );
  assert.deepEqual(vfioPayloads(r, GPU_ID), [
    ['START', payload(true, 0, 0, null, 'END_OF_STATE')],
    ['PART', payload(false, 1, 1000, null, 'END_OF_STATE')],
    ['PART', payload(false, 1, 1001, null, 'DEV_INIT_DATA_SENT')],
    ['PART', payload(false, 1, 1002, null, 'END_OF_STATE')],
    ['END', payload(false, 2, 4196, null, 'END_OF_STATE')],
    ['FULL', payload(false, 0, 0, 256, 'END_OF_STATE')],
  ]);
  assert.deepEqual(vfioPayloads(r, NIC_ID), [
    ['START', payload(true, 0, 0, null, 'END_OF_STATE')],
    ['END', payload(false, 1, 2048, null, 'END_OF_STATE')],
    ['FULL', payload(false, 0, 0, 64, 'END_OF_STATE')],
  ]);
  assert.deepEqual(vfioPayloads(r, 'vfio'), [
    ['START', payload(true, 0, 0, null, 'END_OF_STATE')],
    ['PART', payload(false, 1, 10, null, 'END_OF_STATE')],
    ['PART', payload(false, 1, 10, null, 'END_OF_STATE')],
    ['PART', payload(false, 1, 10, null, 'END_OF_STATE')],
    ['END', payload(false, 0, 0, null, 'END_OF_STATE')],
    ['FULL', payload(false, 0, 0, null, 'DEV_CONFIG_LOAD_READY')],
  ]);
  // START = 17 + idstr, 16-byte setup payload, 5-byte footer.
  const gpuStart = r.items.find((i) => i.item === 'section' && i.sectionId === GPU)!;
  assert.equal(gpuStart.length, 1 + 4 + 1 + GPU_ID.length + 8 + 16 + 5);
});

test('VFIO device totals: records, data bytes, config, init data and load-ready flags', async () => {
  const r = await inspectBytes((await precopyStream()).bytes);
  assert.deepEqual(r.totals.vfio, [
    {
      idstr: GPU_ID,
      instanceId: 0,
      sectionId: GPU,
      sections: 6,
      dataRecords: 5,
      dataBytes: 1000 + 1001 + 1002 + 4096 + 100,
      configSent: true,
      configBytes: 256,
      initDataSent: 1,
      configLoadReady: false,
    },
    {
      idstr: NIC_ID,
      instanceId: 0,
      sectionId: NIC,
      sections: 3,
      dataRecords: 1,
      dataBytes: 2048,
      configSent: true,
      configBytes: 64,
      initDataSent: 0,
      configLoadReady: false,
    },
    {
      idstr: 'vfio',
      instanceId: 0,
      sectionId: MFD,
      sections: 6,
      dataRecords: 3,
      dataBytes: 30,
      configSent: false,
      configBytes: 0,
      initDataSent: 0,
      configLoadReady: true,
    },
  ]);
  assert.deepEqual(r.totals.ram, {
    pageSize: 4096,
    blocks: [
      { idstr: 'pc.ram', usedLength: 1 << 20, pages: 3, zeroPages: 6 },
      { idstr: 'vga.vram', usedLength: 64 << 10, pages: 1, zeroPages: 0 },
    ],
    pages: 4,
    zeroPages: 6,
    pageBytes: 4 * 4096,
    multifdFlushes: 0,
  });
  assert.deepEqual(r.totals.sections, { START: 4, PART: 9, END: 4, FULL: 3 });
  assert.deepEqual(
    r.items.filter((i) => i.item === 'command').map((c) => [c.name, c.value]),
    [
      ['OPEN_RETURN_PATH', null],
      ['PING', 1],
      ['SWITCHOVER_START', null],
    ],
  );
  assert.equal(r.totals.bytes.command, 5 + 9 + 5);
  assert.deepEqual(
    r.vmdesc?.desc.devices.map((d) => d.name),
    [GPU_ID, NIC_ID, 'vfio'],
  );
  assert.equal(
    Object.values(r.totals.bytes).reduce((n: number, x: number) => n + x, 0),
    r.size,
  );
});

test('text: interleaved PART runs group per entry; --sections lists each one', async () => {
  const r = await inspectBytes((await precopyStream()).bytes);
  const grouped = renderText(r).split('\n');
  const parts = grouped.filter((l) => /^ *\d+ {2}PART/.test(l));
  assert.deepEqual(
    parts.map((l) => l.replace(/^ *\d+ {2}/, '').replace(/ +/g, ' ')),
    [
      'PART ×3 2 ram 3 pages, 6 zero pages',
      'PART ×3 3 0000:00:05.0/vfio 3 data records (2.9 KiB), INIT_DATA_SENT',
      'PART ×3 5 vfio 3 data records (30 B)',
    ],
  );
  const full = renderText(r, { sections: true }).split('\n');
  assert.equal(full.filter((l) => /^ *\d+ {2}PART /.test(l)).length, 9);
  for (const re of [
    /^ *\d+ {2}START +3 {2}0000:00:05\.0\/vfio \(instance 0, v1\) +SETUP$/,
    /^ *\d+ {2}END +3 {2}0000:00:05\.0\/vfio +2 data records \(4\.1 KiB\)$/,
    /^ *\d+ {2}END +5 {2}vfio +END_OF_STATE only$/,
    /^ *\d+ {2}FULL +3 {2}0000:00:05\.0\/vfio \(instance 0, v1\) +config 256 B$/,
    /^ *\d+ {2}FULL +5 {2}vfio \(instance 0, v1\) +CONFIG_LOAD_READY$/,
    /^ *\d+ {2}COMMAND +PING 1$/,
    /^ +0000:00:05\.0\/vfio \(instance 0\): save_state, 276 B$/,
    /^ +0000:00:05\.0\/vfio \(instance 0\) +6 +5 +7 KiB \(7199 bytes\) +256 B +yes +no$/,
    /^ +vfio \(instance 0\) +6 +3 +30 bytes +not sent +no +yes$/,
  ]) {
    assert.ok(
      full.some((l) => re.test(l)),
      `no line matches ${re}\n${full.join('\n')}`,
    );
  }
});

test('switchover-ack round again: DEV_INIT_DATA_SENT counted each time it is sent', async () => {
  const b = new StreamBuilder()
    .header()
    .start(GPU, GPU_ID, vfio.setup)
    .part(GPU, vfio.initDataSent)
    .part(GPU, (w) => {
      vfio.data(w, 0);
      vfio.initDataSent(w);
    })
    .eof();
  const r = await inspectBytes(await b.bytes());
  assert.equal(r.error, null);
  assert.equal(r.totals.vfio[0]?.initDataSent, 2);
  // A record of size 0 is still a record (the loader accepts it and writes nothing).
  assert.equal(r.totals.vfio[0]?.dataRecords, 1);
  assert.equal(r.vmdesc, null);
});
