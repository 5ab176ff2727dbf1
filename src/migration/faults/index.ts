/** The fault layer of the migration core: what can be armed (spec.ts) and the plan (plan.ts). */
export * from './spec.ts';
export * from './plan.ts';
