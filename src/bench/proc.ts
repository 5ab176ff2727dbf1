/** What Linux says about a process: its peak resident memory (`/proc/PID/status`). */
import { readFileSync } from 'node:fs';

/** Peak resident set size in bytes (VmHWM), or null when unknown. */
export function peakRssBytes(pid: number): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return null; // not Linux, or the process is gone
  }
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(text);
  return m === null ? null : Number(m[1]) * 1024;
}
