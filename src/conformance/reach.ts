/** Bringing a fresh device to a state through SET, as a VMM would. */
import { MigState, stateName } from '../uapi/index.ts';
import type { DataFd, VfioMigrationDevice } from '../device/device.ts';
import { expectState, setOk } from './expect.ts';

export interface Reached {
  state: MigState;
  /** The session SET returned on the way, if the state has one. */
  fd: DataFd | null;
}

/** SET `state` on a device in RUNNING and confirm it with GET. */
export async function reach(dev: VfioMigrationDevice, state: MigState): Promise<Reached> {
  const fd = state === MigState.RUNNING ? null : await setOk(dev, state);
  await expectState(dev, state, `after SET ${stateName(state)} from RUNNING`);
  return { state, fd };
}
