/** Process identity on Linux: a pid plus its start time, so a reused pid is not mistaken for ours. */
import { readdirSync, readFileSync } from 'node:fs';

interface ProcStat {
  state: string;
  ppid: number;
  startTime: string;
}

function readStat(pid: number): ProcStat | null {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    const rest = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state), rest[1] field 4 (ppid); field 22 (starttime) is rest[19].
    return { state: rest[0] ?? '?', ppid: Number(rest[1]), startTime: rest[19] ?? '' };
  } catch {
    return null;
  }
}

/** The start time of a process (clock ticks since boot), or null if it is not running. */
export function procStartTime(pid: number): string | null {
  if (process.platform !== 'linux') return isRunning(pid) ? 'unknown' : null;
  return readStat(pid)?.startTime ?? null;
}

/** Is `pid` a live (not zombie) process, and the same one that had `startTime`? */
export function isRunning(pid: number, startTime?: string | null): boolean {
  if (process.platform === 'linux') {
    const stat = readStat(pid);
    if (!stat || stat.state === 'Z' || stat.state === 'X') return false;
    return !startTime || startTime === 'unknown' || stat.startTime === startTime;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Send a signal to a process group; false if there is no such group. */
export function killGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

export function killPid(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Is any process of the group still alive? */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Does a process with this pid exist, zombies included (signal 0)? Unlike isRunning, a
 * child that has exited but was not yet reaped counts: what a caller waiting for its
 * own child's exit to be collected needs.
 */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Does `pid` have a live (not zombie) child? Linux only (a scan of /proc); elsewhere true,
 * the answer that makes no caller leave a process alone by mistake.
 */
export function hasLiveChild(pid: number): boolean {
  if (process.platform !== 'linux') return true;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return true;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat && stat.ppid === pid && stat.state !== 'Z' && stat.state !== 'X') return true;
  }
  return false;
}
