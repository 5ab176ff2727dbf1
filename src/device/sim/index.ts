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
export { DMA_RING_SIZE, dmaAllowed, isPinnable, PrivateDmaMemory } from './dma.ts';
export type { DmaKind, PinnableDmaMemory } from './dma.ts';
export { P2P_LOG_LIMIT, P2P_WRITE_SIZE, P2pLog, p2pInitiatorKey } from './p2p.ts';
export type { P2pPeer, P2pReceivedCounter, P2pTransaction, SimP2pPort } from './p2p.ts';
export { P2P_LANDING_SIZE, P2P_WINDOW_SIZE } from './records/p2p-mailbox.ts';
export type { SimModel, SavingStream, ResumingStream, DmaLoggingMode } from './model.ts';
export { MttyModel } from './mtty/model.ts';
export { RecordModel } from './records/model.ts';
export { parseSize } from './params.ts';
