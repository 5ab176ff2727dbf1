export * from './page-bits.ts';
export * from './container.ts';
export * from './viommu.ts';
export * from './guest-driver.ts';
