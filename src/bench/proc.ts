/** What Linux says about a process: peak and current resident memory (`/proc/PID/status`). */
import { readFileSync } from 'node:fs';

function statusField(pid: number, field: 'VmHWM' | 'VmRSS'): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return null; // not Linux, or the process is gone
  }
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text);
  return m === null ? null : Number(m[1]) * 1024;
}

/** Peak resident set size in bytes (VmHWM), or null when unknown. */
export function peakRssBytes(pid: number): number | null {
  return statusField(pid, 'VmHWM');
}

/** Resident set size now in bytes (VmRSS), or null when unknown. */
export function rssBytes(pid: number): number | null {
  return statusField(pid, 'VmRSS');
}
