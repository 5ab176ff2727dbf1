/** The fault matrix (`vfio-migrate faults`): its rows, the runner and the table. */
export * from './matrix.ts';
export * from './processes.ts';
export * from './runner.ts';
export * from './report.ts';
