/**
 * `sim:MODEL[,key=value...]`: the device spec of the CLI and VM configs, e.g.
 * `sim:nic,flags=stop-copy+p2p+pre-copy,state-size=8M,dirty-rate=2M,dma-rate=1M,seed=7`.
 */
import type { DmaMemory } from '../device.ts';
import { SimDevice } from './device.ts';
import { DEFAULT_DMA_LOG_LIMITS } from './dma-log.ts';
import { SIM_MODELS } from './models.ts';
import type { CommonParams, ModelDef, SimModelName } from './models.ts';
import { describeParams, parseParams } from './params.ts';
import type { ParamHelp } from './params.ts';

export interface SimSpec {
  model: SimModelName;
  /** The parsed parameters of that model (MttyParams or RecordParams). */
  params: CommonParams & Record<string, unknown>;
}

export interface CreateSimDeviceOptions {
  /** Device name for logs, e.g. "nic0"; default the model name. */
  id?: string;
  /** Guest memory for DMA (can also be attached later). */
  memory?: DmaMemory;
  /** Run activity from wall time every N ms (unref'ed timer). Off by default. */
  autoRunMs?: number;
}

const MODEL_NAMES = Object.keys(SIM_MODELS) as SimModelName[];

function isModelName(name: string): name is SimModelName {
  return (MODEL_NAMES as string[]).includes(name);
}

/** Splits and validates a spec; throws an Error naming the model, key and accepted values. */
export function parseSimSpec(spec: string): SimSpec {
  const m = /^sim:([^,]*)(?:,(.*))?$/.exec(spec.trim());
  if (!m)
    throw new Error(
      `device spec "${spec}" does not start with "sim:MODEL" (models: ${MODEL_NAMES.join(', ')})`,
    );
  const model = m[1]!.trim().toLowerCase();
  if (!isModelName(model)) {
    throw new Error(
      `device spec "${spec}": unknown model "${model}" (accepted: ${MODEL_NAMES.join(', ')})`,
    );
  }
  const given = new Map<string, string>();
  for (const item of (m[2] ?? '').split(',')) {
    if (item.trim() === '') continue;
    const eq = item.indexOf('=');
    if (eq <= 0) throw new Error(`sim:${model}: "${item}" is not key=value`);
    const key = item.slice(0, eq).trim().toLowerCase();
    if (given.has(key)) throw new Error(`sim:${model}: parameter "${key}" given twice`);
    given.set(key, item.slice(eq + 1).trim());
  }
  const def = SIM_MODELS[model] as unknown as ModelDef<CommonParams>;
  return { model, params: parseParams(def.params, given, `sim:${model}`) as SimSpec['params'] };
}

/** Builds a simulated device from a spec string (or an already parsed spec). */
export function createSimDevice(
  spec: string | SimSpec,
  opts: CreateSimDeviceOptions = {},
): SimDevice {
  const parsed = typeof spec === 'string' ? parseSimSpec(spec) : spec;
  const def = SIM_MODELS[parsed.model] as unknown as ModelDef<CommonParams>;
  const p = parsed.params;
  return new SimDevice({
    id: opts.id ?? parsed.model,
    model: def.build(p),
    flags: p.flags,
    migratable: p.migratable,
    dataSize: p['data-size'],
    seed: p.seed,
    logLimits: { ...DEFAULT_DMA_LOG_LIMITS, maxRanges: p['log-ranges'] },
    ...(opts.memory ? { memory: opts.memory } : {}),
    ...(opts.autoRunMs !== undefined ? { autoRunMs: opts.autoRunMs } : {}),
  });
}

export interface SimModelHelp {
  model: SimModelName;
  description: string;
  params: ParamHelp[];
}

/** Every model with its parameters, for `--help` and docs. */
export function describeSimModels(): SimModelHelp[] {
  return MODEL_NAMES.map((model) => {
    const def = SIM_MODELS[model] as unknown as ModelDef<CommonParams>;
    return { model, description: def.description, params: describeParams(def.params) };
  });
}

/** Plain-text help: one block per model, one line per parameter. */
export function simModelsHelp(): string {
  return describeSimModels()
    .map(
      (m) =>
        `sim:${m.model} — ${m.description}\n` +
        m.params
          .map((p) => `  ${p.key}=${p.accepts}  (default ${p.default})\n      ${p.help}`)
          .join('\n'),
    )
    .join('\n\n');
}
