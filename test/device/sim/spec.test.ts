/** The `sim:MODEL,key=value` parser and the parameter help, both from one table per model. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createSimDevice,
  describeSimModels,
  parseSimSpec,
  parseSize,
  simModelsHelp,
} from '../../../src/device/sim/index.ts';
import { LEGAL_FLAG_SETS } from '../../../src/uapi/index.ts';
import { flagsWord } from './helpers.ts';

test('the example spec of the docs parses to the documented values', () => {
  const { model, params } = parseSimSpec(
    'sim:nic,flags=stop-copy+p2p+pre-copy,state-size=8M,dirty-rate=2M,dma-rate=1M,seed=7',
  );
  assert.equal(model, 'nic');
  assert.equal(params.flags, 7);
  assert.equal(params['state-size'], 8 << 20);
  assert.equal(params['dirty-rate'], 2 << 20);
  assert.equal(params['dma-rate'], 1 << 20);
  assert.equal(params.seed, 7);
  assert.equal(params['chunk-size'], 64 << 10, 'defaults fill the rest');
  assert.equal(params['data-size'], 'estimate');
});

test('every model builds with defaults and with each legal flag set', async () => {
  for (const m of describeSimModels()) {
    const small = m.model === 'gpu' ? ',state-size=1M' : '';
    for (const flags of LEGAL_FLAG_SETS) {
      const dev = createSimDevice(`sim:${m.model}${small},flags=${flagsWord(flags)}`);
      assert.equal(await dev.migrationFlags(), flags);
      assert.equal(dev.model.kind, m.model);
    }
  }
  assert.equal(await createSimDevice('sim:mtty').migrationFlags(), 7, 'default: all three flags');
});

test('sizes take K, M, G suffixes', () => {
  assert.equal(parseSize('4096'), 4096);
  assert.equal(parseSize('64K'), 65536);
  assert.equal(parseSize('8m'), 8 << 20);
  assert.equal(parseSize('1G'), 1 << 30);
  assert.throws(() => parseSize('1.5M'), /not a size/);
  assert.throws(() => parseSize('12T'), /not a size/);
});

test('bad specs name what is wrong and what is accepted', () => {
  const cases: [string, RegExp][] = [
    ['nic', /does not start with "sim:MODEL"/],
    ['sim:tape', /unknown model "tape" \(accepted: mtty, nic, gpu\)/],
    ['sim:nic,colour=blue', /unknown parameter "colour" \(accepted: flags, .*state-size/],
    ['sim:nic,state-size=3', /bad value "3" for state-size: .*accepted: a size 4K\.\.1G/],
    ['sim:nic,state-size=5000', /state-size.*multiple of 4K/],
    ['sim:nic,flags=p2p', /flags.*stop-copy is mandatory/],
    ['sim:nic,flags=stop-copy+turbo', /unknown migration flag "turbo"/],
    ['sim:mtty,ports=0', /bad value "0" for ports: out of range \(accepted: an integer 1\.\.16\)/],
    ['sim:gpu,logging=maybe', /logging.*accepted: on \| off/],
    ['sim:nic,data-size=half', /data-size.*accepted: estimate \| full/],
    ['sim:nic,seed', /"seed" is not key=value/],
    ['sim:nic,seed=1,seed=2', /"seed" given twice/],
  ];
  for (const [spec, re] of cases) assert.throws(() => parseSimSpec(spec), re, spec);
  assert.throws(
    () => createSimDevice('sim:nic,state-size=96K,chunk-size=64K'),
    /state-size 98304 is not a multiple of chunk-size 65536/,
  );
});

test('help lists every parameter of every model with its default and accepted values', () => {
  const help = simModelsHelp();
  for (const m of describeSimModels()) {
    assert.ok(help.includes(`sim:${m.model} — `), m.model);
    for (const p of m.params) {
      assert.ok(p.help.length > 10, `${m.model}.${p.key} is documented`);
      // Defaults are valid values of their own parameter.
      parseSimSpec(`sim:${m.model},${p.key}=${p.default}`);
    }
  }
  const nic = describeSimModels().find((m) => m.model === 'nic')!;
  assert.deepEqual(nic.params.find((p) => p.key === 'flags')!.default, 'stop-copy+p2p+pre-copy');
});
