/** QMP: a QEMU-compatible server for the VM and a client for the tools that drive it. */
export { formatQmpAddress, parseQmpAddress } from './address.ts';
export type { QmpAddress } from './address.ts';
export { QmpError, QmpErrorClass, genericError } from './errors.ts';
export type { QmpErrorClassName } from './errors.ts';
export { JsonParseError } from './json-parser.ts';
export type { JsonObject, JsonValue } from './json-parser.ts';
export type {
  QmpArgsSchema,
  QmpCommandContext,
  QmpCommandDef,
  QmpConnectionInfo,
  QmpSession,
} from './registry.ts';
export { QmpServer } from './server.ts';
export type { QmpServerOptions } from './server.ts';
export type { QmpEvent, QmpGreeting, QmpTimestamp, QmpVersionInfo } from './wire.ts';
export { QmpClient, QmpConnectionError, QmpTimeoutError } from './client.ts';
export type { QmpClientOptions, QmpExecuteOptions } from './client.ts';
