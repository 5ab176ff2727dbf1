/**
 * The simulated device models and their parameters, each declared once: the table drives the
 * `sim:MODEL,key=value` parser and the help text (`describeSimModels`).
 */
import {
  VFIO_MIGRATION_P2P,
  VFIO_MIGRATION_PRE_COPY,
  VFIO_MIGRATION_STOP_COPY,
} from '../../uapi/index.ts';
import type { MigrationFlags } from '../../uapi/index.ts';
import { DEFAULT_DMA_LOG_LIMITS } from './dma-log.ts';
import type { SimModel } from './model.ts';
import { MttyModel } from './mtty/model.ts';
import { choiceParam, flagsParam, intParam, onOffParam, sizeParam } from './params.ts';
import type { ParamTable } from './params.ts';
import { RecordModel } from './records/model.ts';

const ALL_FLAGS = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_P2P | VFIO_MIGRATION_PRE_COPY;

/** Parameters every model takes. */
export interface CommonParams {
  flags: MigrationFlags;
  migratable: boolean;
  seed: number;
  'data-size': 'estimate' | 'full';
  'log-ranges': number;
}

const COMMON: ParamTable<CommonParams> = {
  flags: flagsParam('migration capability flags (VFIO_MIGRATION_*)', ALL_FLAGS),
  migratable: onOffParam('off: the device has no migration support (ENOTTY)', 'on'),
  seed: intParam(
    'PRNG seed: power-on contents and activity are reproducible from it',
    '1',
    0,
    0xffffffff,
  ),
  'data-size': choiceParam(
    'MIG_DATA_SIZE: what a STOP_COPY now would still produce, or the whole state (like mlx5)',
    'estimate',
    ['estimate', 'full'],
  ),
  'log-ranges': intParam(
    'IOVA ranges the DMA tracker supports; more are merged over the smallest gaps',
    String(DEFAULT_DMA_LOG_LIMITS.maxRanges),
    1,
    256,
  ),
};

export interface MttyParams extends CommonParams {
  ports: number;
  activity: number;
}

/** Parameters of the record-engine models (nic, gpu). */
export interface RecordParams extends CommonParams {
  'state-size': number;
  'chunk-size': number;
  'dirty-rate': number;
  'dma-rate': number;
  logging: boolean;
  'p2p-rate': number;
  'load-rate': number;
}

export interface ModelDef<P extends CommonParams> {
  description: string;
  params: ParamTable<P>;
  build(p: P): SimModel;
}

const mtty: ModelDef<MttyParams> = {
  description: 'the mtty sample: 16550-like serial ports, a tiny fixed image, no DMA',
  params: {
    ...COMMON,
    ports: intParam('serial ports (36 bytes of UART state each)', '2', 1, 16),
    activity: intParam('guest UART accesses per second while running', '20', 0, 1_000_000),
  },
  build: (p) => new MttyModel({ ports: p.ports, activity: p.activity, seed: p.seed }),
};

function recordParams(defaults: {
  stateSize: string;
  chunkSize: string;
  dirtyRate: string;
  dmaRate: string;
}): ParamTable<RecordParams> {
  return {
    ...COMMON,
    'state-size': sizeParam('internal device state', defaults.stateSize, 4096, 1 << 30, {
      multipleOf: 4096,
    }),
    'chunk-size': sizeParam(
      'state chunk: unit of dirty tracking and image records',
      defaults.chunkSize,
      4096,
      1 << 20,
      {
        multipleOf: 4096,
      },
    ),
    'dirty-rate': sizeParam(
      'bytes of internal state that become dirty per second while running (whole chunks)',
      defaults.dirtyRate,
      0,
      1 << 30,
    ),
    'dma-rate': sizeParam(
      'bytes written into guest memory by DMA per second while running',
      defaults.dmaRate,
      0,
      1 << 30,
    ),
    logging: onOffParam('DMA dirty logging (features 6/7/8); off: ENOTTY', 'on'),
    'p2p-rate': intParam(
      'P2P writes per second into connected peers while running; > 0 also gives the device a 4K P2P window at the end of its state',
      '0',
      0,
      1_000_000,
    ),
    'load-rate': sizeParam(
      'bytes per second a resuming device needs to set up each chunk on its first load (in write); 0: free',
      '0',
      0,
      16 * (1 << 30),
    ),
  };
}

function recordModel(kind: string, modelId: number, deviceId: number, classCode: number) {
  return (p: RecordParams): SimModel => {
    if (p['state-size'] % p['chunk-size'] !== 0) {
      throw new Error(
        `sim:${kind}: state-size ${p['state-size']} is not a multiple of chunk-size ${p['chunk-size']}`,
      );
    }
    return new RecordModel({
      kind,
      modelId,
      // 0x1b36 is the vendor id of emulated devices; the device ids are this project's own.
      pciIds: { vendorId: 0x1b36, deviceId, classCode, revision: 1, msixEntries: 16 },
      stateSize: p['state-size'],
      chunkSize: p['chunk-size'],
      dirtyRate: p['dirty-rate'],
      dmaRate: p['dma-rate'],
      logging: p.logging,
      p2pRate: p['p2p-rate'],
      loadRate: p['load-rate'],
      seed: p.seed,
    });
  };
}

const nic: ModelDef<RecordParams> = {
  description:
    'an mlx5-like NIC VF: a few MiB of state in record stream, DMA into guest RAM, dirty tracking',
  params: recordParams({ stateSize: '4M', chunkSize: '64K', dirtyRate: '1M', dmaRate: '1M' }),
  build: recordModel('nic', 1, 0x5a01, 0x020000),
};

const gpu: ModelDef<RecordParams> = {
  description: 'a GPU-like device: the nic record engine with a large state and a high dirty rate',
  params: recordParams({ stateSize: '256M', chunkSize: '64K', dirtyRate: '32M', dmaRate: '8M' }),
  build: recordModel('gpu', 2, 0x5a02, 0x030000),
};

export const SIM_MODELS = { mtty, nic, gpu } as const;
export type SimModelName = keyof typeof SIM_MODELS;
