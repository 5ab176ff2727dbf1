/**
 * The VM configuration file of `vfio-migrate run --config FILE`: RAM, vCPUs and their
 * workload, devices with their vfio-pci properties. JSON, property names in QEMU's kebab-case,
 * validated with every error naming the JSON path of the bad value.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { parseSize, parseSimSpec } from '../device/sim/index.ts';
import { HOST_IOMMU_MODES } from '../memory/iommu/index.ts';
import { parseObjectOptions } from '../security/index.ts';

const size = (what: string) =>
  z.union([z.number().int().nonnegative(), z.string()]).transform((v, ctx) => {
    if (typeof v === 'number') return v;
    try {
      return parseSize(v);
    } catch (err) {
      ctx.addIssue({
        code: 'custom',
        message: `${what}: ${err instanceof Error ? err.message : String(err)}`,
      });
      return z.NEVER;
    }
  });

const onOffAuto = z.enum(['on', 'off', 'auto']);
const onOff = z
  .union([z.boolean(), z.enum(['on', 'off'])])
  .transform((v) => v === true || v === 'on');

const deviceSchema = z
  .object({
    /** Stable device id, shown in events and reports ("qdev id"). */
    id: z
      .string()
      .regex(/^[A-Za-z][A-Za-z0-9_.-]{0,63}$/, 'an id: a letter, then letters, digits, _ . -'),
    /** The backend: `sim:MODEL[,key=value...]`. */
    model: z.string().superRefine((v, ctx) => {
      try {
        parseSimSpec(v);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
      }
    }),
    /** PCI address used for the savevm idstr "<addr>/vfio"; assigned in order when absent. */
    addr: z
      .string()
      .regex(/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/, 'a PCI address like 0000:00:05.0')
      .optional(),
    'enable-migration': onOffAuto.default('auto'),
    'migration-events': onOff.default(false),
    'x-pre-copy-dirty-page-tracking': onOff.default(true),
    'x-device-dirty-page-tracking': onOff.default(true),
    'x-migration-multifd-transfer': onOffAuto.default('auto'),
    'x-migration-load-config-after-iter': onOffAuto.default('auto'),
    'x-migration-max-queued-buffers-size': size('x-migration-max-queued-buffers-size').optional(),
  })
  .strict();

/** An `-object`: QMP object-add arguments, or the command-line string (security/objects.ts). */
const objectSchema = z
  .union([z.string(), z.record(z.string(), z.unknown())])
  .superRefine((v, ctx) => {
    try {
      parseObjectOptions(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: err instanceof Error ? err.message : String(err) });
    }
  });

const workloadSchema = z
  .object({
    /** MiB/s of page writes for the whole VM, or "max". */
    'dirty-rate': z.union([z.number().nonnegative(), z.literal('max')]).default(0),
    pattern: z.enum(['uniform', 'hot', 'sequential']).default('uniform'),
    /** For pattern "hot": the size and offset of the hot window. */
    'hot-size': size('hot-size').optional(),
    'hot-offset': size('hot-offset').default(0),
    /** Share of page writes that zero the whole page. */
    'zero-share': z.number().min(0).max(1).default(0),
    seed: z.number().int().nonnegative().default(1),
  })
  .strict()
  .superRefine((w, ctx) => {
    if (w.pattern === 'hot' && w['hot-size'] === undefined) {
      ctx.addIssue({ code: 'custom', path: ['hot-size'], message: 'pattern "hot" needs hot-size' });
    }
  });

/** A guest IOMMU and its guest driver's DMA windows (memory/iommu/guest-driver.ts). */
const viommuSchema = z
  .object({
    windows: z.number().int().min(1).max(1024).default(8),
    'window-size': size('window-size').default(256 << 10),
    /** ms between window replacements while the guest runs; 0 never. */
    'remap-interval': z.number().int().min(0).max(60_000).default(20),
    seed: z.number().int().nonnegative().default(1),
  })
  .strict();

const ramBlockSchema = z
  .object({
    idstr: z.string().min(1).max(255),
    size: size('size'),
    /** Guest-physical base; blocks follow each other when absent. */
    gpa: size('gpa').optional(),
  })
  .strict();

export const vmConfigSchema = z
  .object({
    name: z.string().min(1).default('vm'),
    /** Machine type carried in the stream's configuration section; must match both sides. */
    machine: z.string().min(1).max(255).default('pc'),
    /**
     * The architecture QEMU would emulate (qemu-system-TARGET). On ARM a VFIO device's config
     * is loaded after every iterable (x-migration-load-config-after-iter=auto).
     */
    target: z.enum(['x86_64', 'aarch64']).default('x86_64'),
    /** RAM of a "pc" layout: one block "pc.ram", split below/above 4 GiB as QEMU's pc does. */
    memory: size('memory').optional(),
    /** Or explicit RAM blocks at given (or consecutive) guest-physical addresses. */
    'ram-blocks': z.array(ramBlockSchema).min(1).optional(),
    vcpus: z.number().int().min(0).max(64).default(1),
    workload: workloadSchema.default(workloadSchema.parse({})),
    /** Initial RAM content (seeded); false leaves RAM zero. */
    populate: z
      .union([
        z.literal(false),
        z
          .object({
            seed: z.number().int().nonnegative().default(1),
            'zero-share': z.number().min(0).max(1).default(0.25),
          })
          .strict(),
      ])
      .default({ seed: 1, 'zero-share': 0.25 }),
    /**
     * Raw images copied into RAM after `populate`, as QEMU's `-device
     * loader,file=FILE,addr=ADDR,force-raw=on` (on a source: an incoming guest's RAM comes
     * from the stream).
     */
    loader: z
      .array(z.object({ file: z.string().min(1), addr: size('addr').default(0) }).strict())
      .max(64)
      .default([]),
    /** QEMU's -mem-prealloc: all RAM backed at start, no first-touch faults later. */
    'mem-prealloc': z.boolean().default(false),
    devices: z.array(deviceSchema).default([]),
    /** TLS credentials and authz lists the migration parameters tls-creds / tls-authz name. */
    objects: z.array(objectSchema).max(64).default([]),
    /**
     * The host IOMMU the devices sit behind and how it tracks dirty pages: none,
     * type1-perpetual (every mapped page), type1-pinned (pinned pages), iommufd (written pages).
     */
    iommu: z.enum(HOST_IOMMU_MODES).default('type1-perpetual'),
    /** A guest IOMMU (true for the defaults): the devices DMA through the guest's mappings. */
    viommu: z
      .union([z.boolean(), viommuSchema])
      .default(false)
      .transform((v) => (v === true ? viommuSchema.parse({}) : v)),
  })
  .strict()
  .superRefine((c, ctx) => {
    if ((c.memory === undefined) === (c['ram-blocks'] === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give exactly one of "memory" and "ram-blocks"' });
    }
    const ids = new Set<string>();
    c.devices.forEach((d, i) => {
      if (ids.has(d.id)) {
        ctx.addIssue({
          code: 'custom',
          path: ['devices', i, 'id'],
          message: `duplicate id "${d.id}"`,
        });
      }
      ids.add(d.id);
    });
  });

export type VmConfig = z.output<typeof vmConfigSchema>;
export type DeviceConfig = VmConfig['devices'][number];

export class VmConfigError extends Error {
  override readonly name = 'VmConfigError';
}

/** Validates a parsed JSON value; the error lists every problem with its JSON path. */
export function parseVmConfig(value: unknown, source = 'config'): VmConfig {
  const res = vmConfigSchema.safeParse(value);
  if (res.success) return res.data;
  const lines = res.error.issues.map((i) => {
    const path = i.path.length > 0 ? i.path.map(String).join('.') : '(top level)';
    return `  ${path}: ${i.message}`;
  });
  throw new VmConfigError(`${source} is not a valid VM configuration:\n${lines.join('\n')}`);
}

/** Reads and validates a JSON file; JSON syntax errors name the file. */
export function loadVmConfig(path: string): VmConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new VmConfigError(
      `cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new VmConfigError(
      `${path} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return parseVmConfig(value, path);
}
