/**
 * Simulated VFIO devices: strict vendor drivers behind the device interface (mtty, nic, gpu),
 * with activity over simulated time, DMA into guest memory, DMA dirty logging and fault
 * injection. Start with `createSimDevice('sim:nic,state-size=8M')`.
 */
export { SimDevice } from './device.ts';
export type { SimDeviceOptions } from './device.ts';
export { SimDataFd } from './data-fd.ts';
export { SimFaults } from './faults.ts';
export type { ArcFaultOptions } from './faults.ts';
export { createSimDevice, describeSimModels, parseSimSpec, simModelsHelp } from './spec.ts';
export type { CreateSimDeviceOptions, SimModelHelp, SimSpec } from './spec.ts';
export { SIM_MODELS } from './models.ts';
export type { CommonParams, MttyParams, RecordParams, SimModelName } from './models.ts';
export {
  PciConfigSpace,
  MSIX_TABLE_OFFSET,
  MSIX_ENTRY_SIZE,
  PCI_CONFIG_HEADER_SIZE,
} from './config-space.ts';
export type { PciIds } from './config-space.ts';
export { DmaDirtyLog, combineRanges } from './dma-log.ts';
export type { DmaLogLimits } from './dma-log.ts';
export { dmaAllowed, PrivateDmaMemory } from './dma.ts';
export type { DmaKind, P2pPeer } from './dma.ts';
export type { SimModel, SavingStream, ResumingStream, DmaLoggingMode } from './model.ts';
export { MttyModel } from './mtty/model.ts';
export { RecordModel } from './records/model.ts';
export { parseSize } from './params.ts';
