/**
 * The composition root: one VM built from its configuration — guest RAM, vCPU threads, run
 * state, simulated VFIO devices attached to the RAM, the migration core and the VFIO layer,
 * wired as QEMU wires them. QMP and the CLI sit on top and only talk to this object.
 */
import { createHash } from 'node:crypto';
import type { VfioMigrationDevice } from '../device/device.ts';
import { SimDevice, createSimDevice } from '../device/sim/index.ts';
import { RunState, Vcpus, VmRunControl, populateRam } from '../guest/index.ts';
import { GuestMemory, loadRawImage } from '../memory/index.ts';
import type { RamDigest } from '../memory/index.ts';
import { IommuContainer } from '../memory/iommu/index.ts';
import {
  MigrationBlockers,
  MigrationNotifiers,
  SaveVMRegistry,
  createVmMigration,
  describeHandlerFailures,
  migrationIsRunning,
} from '../migration/index.ts';
import type { MigrationOptionsInit, VmMigration } from '../migration/index.ts';
import { MigrationFaultPlan } from '../migration/faults/index.ts';
import { UserObjects } from '../security/index.ts';
import { attachVfioDevices } from '../vfio/index.ts';
import type { VfioDeviceSet } from '../vfio/index.ts';
import type { VmConfig } from './config.ts';
import { VmViommu } from './viommu.ts';
import { workloadOf } from './workload.ts';

/** A QMP-style event: name and optional data. */
export interface VmEvent {
  readonly event: string;
  readonly data?: Record<string, unknown>;
}

export interface VmStartOptions {
  /** `-incoming URI` (or 'defer' to wait for migrate-incoming). */
  readonly incoming?: string;
  /** QEMU's -S: do not start the guest (nor an incoming guest after its load). */
  readonly paused?: boolean;
  /** Capabilities, parameters and migration properties to begin with. */
  readonly migration?: MigrationOptionsInit;
  /** Device activity tick (ms of wall time); 0 turns device activity off. */
  readonly deviceTickMs?: number;
  /** Warnings (e.g. from the VFIO layer) go here; default stderr. */
  readonly warn?: (message: string) => void;
}

export interface StateDigest {
  /** SHA-256 over the RAM digest and every device digest. */
  readonly sha256: string;
  readonly ram: RamDigest;
  readonly devices: readonly { id: string; sha256: string }[];
}

interface VmParts {
  config: VmConfig;
  memory: GuestMemory;
  vcpus: Vcpus | null;
  runControl: VmRunControl;
  registry: SaveVMRegistry;
  notifiers: MigrationNotifiers;
  blockers: MigrationBlockers;
  migration: VmMigration;
  objects: UserObjects;
  devices: VfioMigrationDevice[];
  container: IommuContainer;
  viommu: VmViommu | null;
  events: VmEventHub;
  incomingMode: 'uri' | 'defer' | null;
  faults: MigrationFaultPlan;
}

/** Where the VM's QMP-visible events fan out. */
class VmEventHub {
  readonly #listeners = new Set<(e: VmEvent) => void>();
  on(listener: (e: VmEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  emit(e: VmEvent): void {
    for (const l of this.#listeners) l(e);
  }
}

export class Vm {
  readonly config: VmConfig;
  readonly memory: GuestMemory;
  readonly vcpus: Vcpus | null;
  readonly runControl: VmRunControl;
  readonly registry: SaveVMRegistry;
  readonly notifiers: MigrationNotifiers;
  readonly blockers: MigrationBlockers;
  readonly migration: VmMigration;
  /** `-object`s (config `objects`, QMP object-add): TLS credentials, authz lists. */
  readonly objects: UserObjects;
  /** The host IOMMU the devices DMA through (config `iommu`). */
  readonly container: IommuContainer;
  /** The guest IOMMU (config `viommu`), if any. */
  readonly viommu: VmViommu | null;
  readonly vfio: VfioDeviceSet;
  /** Channel and load faults armed on this VM's migrations (QMP x-inject-fault). */
  readonly faults: MigrationFaultPlan;
  /** 'defer' until migrate-incoming; null when the VM was not started for an incoming one. */
  readonly incomingMode: 'uri' | 'defer' | null;
  readonly #events: VmEventHub;
  readonly #devices: VfioMigrationDevice[];
  #destroyed = false;

  private constructor(parts: VmParts, vfio: VfioDeviceSet) {
    this.config = parts.config;
    this.memory = parts.memory;
    this.vcpus = parts.vcpus;
    this.runControl = parts.runControl;
    this.registry = parts.registry;
    this.notifiers = parts.notifiers;
    this.blockers = parts.blockers;
    this.migration = parts.migration;
    this.objects = parts.objects;
    this.#devices = parts.devices;
    this.container = parts.container;
    this.viommu = parts.viommu;
    this.vfio = vfio;
    this.incomingMode = parts.incomingMode;
    this.faults = parts.faults;
    this.#events = parts.events;
  }

  /** Builds and starts a VM. The guest runs unless `paused` or incoming. */
  static async create(config: VmConfig, opts: VmStartOptions = {}): Promise<Vm> {
    const warn = opts.warn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`));
    const incoming = opts.incoming;
    // Loaded first: a credentials problem stops the VM before anything runs.
    const objects = UserObjects.create(config.objects);
    const memory = config.memory
      ? GuestMemory.pc(config.memory)
      : GuestMemory.flat(config['ram-blocks'] ?? []);
    // The destination's RAM is overwritten by the stream: only a source needs content.
    if (!incoming && config.populate !== false) {
      populateRam(memory, { seed: config.populate.seed, zeroShare: config.populate['zero-share'] });
    }
    if (!incoming) for (const image of config.loader) loadRawImage(memory, image.file, image.addr);
    if (config['mem-prealloc']) memory.prealloc();
    const events = new VmEventHub();
    const registry = new SaveVMRegistry();
    const notifiers = new MigrationNotifiers();
    const blockers = new MigrationBlockers();
    const vcpus =
      config.vcpus > 0
        ? await Vcpus.create(memory, { count: config.vcpus, workload: workloadOf(config.workload) })
        : null;
    const runControl = new VmRunControl({
      vcpus: vcpus ?? undefined,
      initial: incoming ? RunState.INMIGRATE : RunState.PRELAUNCH,
    });
    // The fault layer sits in the channel factories; with nothing armed it passes through.
    const faults = new MigrationFaultPlan();
    const migration = createVmMigration({
      registry,
      memory,
      runControl,
      notifiers,
      blockers,
      machineType: config.machine,
      options: opts.migration,
      autostart: !opts.paused,
      objects,
      outgoing: { connect: faults.connect, deviceStatePackets: faults.deviceStatePackets },
      incoming: {
        listen: faults.listen,
        loadObserver: faults.loadObserver,
        channelIdentified: faults.channelIdentified,
      },
    });
    faults.bind(migration);
    const tick = opts.deviceTickMs ?? 10;
    // Devices DMA through the container, and start once it maps what they may reach.
    const devices = config.devices.map((d) => createSimDevice(d.model, { id: d.id }));
    const container = new IommuContainer(memory, config.iommu);
    const viommu =
      config.viommu === false
        ? null
        : new VmViommu(memory, config.viommu, runControl, registry, incoming !== undefined);
    const parts: VmParts = {
      config,
      memory,
      vcpus,
      runControl,
      registry,
      notifiers,
      blockers,
      migration,
      objects,
      devices,
      container,
      viommu,
      events,
      incomingMode: incoming === undefined ? null : incoming === 'defer' ? 'defer' : 'uri',
      faults,
    };
    try {
      const vfio = await attachVfioDevices({
        registry,
        runControl,
        memory,
        notifiers,
        blockers,
        container,
        ...(viommu ? { viommu: viommu.viommu } : {}),
        devices: config.devices.map((d, i) => ({
          device: devices[i]!,
          addr: d.addr,
          properties: d,
        })),
        migrationStatus: () => migration.query().status,
        targetArm: config.target === 'aarch64',
        listeners: {
          event: (data) => events.emit({ event: 'VFIO_MIGRATION', data: { ...data } }),
          warning: warn,
        },
      });
      for (const d of devices) {
        if (!(d instanceof SimDevice)) continue;
        d.attachMemory(container.dmaView);
        // Every device may write into each peer that has a P2P window (p2p-rate).
        for (const peer of devices) {
          if (peer !== d && peer instanceof SimDevice && peer.hasP2pWindow) d.connectPeer(peer);
        }
      }
      // A device works once the guest has driven it: on a destination, only after the load,
      // when the guest first runs (its state arrives in RESUMING, not from activity before).
      const startActivity = () => {
        if (tick <= 0) return;
        for (const d of devices) if (d instanceof SimDevice) d.startAutoRun(tick);
      };
      if (incoming) {
        const off = runControl.onEvent((e) => {
          if (e.event !== 'RESUME') return;
          off();
          startActivity();
        });
      } else {
        startActivity();
      }
      const vm = new Vm(parts, vfio);
      migration.outgoing.addInfoProvider(vfio.infoProvider());
      migration.events.on((e) => events.emit({ event: e.event, data: { ...e.data } }));
      runControl.onEvent((e) => events.emit({ event: e.event }));
      if (incoming && incoming !== 'defer') await migration.incoming.start(incoming);
      else if (!incoming && !opts.paused) await vm.start();
      return vm;
    } catch (err) {
      await destroyParts(parts);
      throw err;
    }
  }

  /** The devices still plugged in, in configuration order. */
  get devices(): readonly VfioMigrationDevice[] {
    return this.#devices;
  }

  /**
   * `device_del`: unplugs a VFIO device (the guest is taken to agree at once). Its migration
   * entry, handlers and blockers go and the multiple-devices blocker is re-evaluated; peers
   * stop writing to it. Refused while a migration runs, as QEMU refuses it.
   */
  async removeDevice(id: string): Promise<void> {
    const pci = this.vfio.find(id);
    const device = this.#devices.find((d) => d.id === id);
    if (pci === undefined || device === undefined) throw new Error(`Device '${id}' not found`);
    const { outgoing, incoming } = this.migration;
    if (migrationIsRunning(outgoing.status) || migrationIsRunning(incoming.status)) {
      throw new Error('device_del not allowed while migrating');
    }
    this.vfio.remove(pci);
    this.#devices.splice(this.#devices.indexOf(device), 1);
    for (const d of this.#devices)
      if (d instanceof SimDevice && device instanceof SimDevice) d.disconnectPeer(device);
    await device.close();
    this.#events.emit({ event: 'DEVICE_DELETED', data: { device: id, path: pci.qomPath } });
  }

  /** `cont`: start (or resume) the guest. */
  async start(): Promise<void> {
    const failures = await this.runControl.vmStart();
    if (failures.length > 0)
      throw new Error(`starting the VM: ${describeHandlerFailures(failures)}`);
  }

  /** `stop`. */
  async stop(): Promise<void> {
    const failures = await this.runControl.vmStop(RunState.PAUSED);
    if (failures.length > 0)
      throw new Error(`stopping the VM: ${describeHandlerFailures(failures)}`);
  }

  onEvent(listener: (e: VmEvent) => void): () => void {
    return this.#events.on(listener);
  }

  /** Digests of guest RAM and of every device's internal state (`x-query-state-digest`). */
  async stateDigest(): Promise<StateDigest> {
    const ram = this.memory.digest();
    const devices = [];
    for (const d of this.devices) {
      devices.push({ id: d.id, sha256: d.stateDigest ? await d.stateDigest() : '' });
    }
    const all = createHash('sha256').update(`ram ${ram.sha256}\n`);
    for (const d of devices) all.update(`${d.id} ${d.sha256}\n`);
    return { sha256: all.digest('hex'), ram, devices };
  }

  /** Stops everything the VM owns; the process can then exit. Idempotent. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    await destroyParts(this);
  }
}

async function destroyParts(p: {
  migration: VmMigration;
  vcpus: Vcpus | null;
  devices: readonly VfioMigrationDevice[];
  viommu: VmViommu | null;
}): Promise<void> {
  p.viommu?.destroy();
  // A no-op unless a migration runs (pre-switchover and device included).
  p.migration.outgoing.cancel();
  await p.migration.incoming.close().catch(() => undefined);
  await p.vcpus?.destroy();
  await Promise.allSettled(p.devices.map((d) => d.close()));
}
