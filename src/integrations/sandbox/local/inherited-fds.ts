import type { IOType, StdioNull, StdioPipe } from 'node:child_process';
import { openSync, readdirSync, readFileSync } from 'node:fs';

const O_CLOEXEC = 0o2000000;

type StdioEntry = IOType | StdioNull | StdioPipe | 'ipc' | number;

/**
 * Children of this process get stdio, plus any descriptor the service itself inherited without
 * close-on-exec (from whatever started it); those would reach every sandbox. This covers each one
 * with /dev/null in the children.
 */
export class InheritedFdShield {
  private readonly leaking: number[];
  private devNull?: number;

  constructor(leaking = leakingDescriptors()) {
    this.leaking = leaking;
  }

  /** `stdio` extended so that every leaking descriptor is replaced by /dev/null. */
  stdio(stdio: StdioEntry[]): StdioEntry[] {
    const covered = [...stdio];
    for (const fd of this.leaking) {
      if (fd < covered.length) continue;
      while (covered.length < fd) covered.push('ignore');
      this.devNull ??= openSync('/dev/null', 'r');
      covered.push(this.devNull);
    }
    return covered;
  }
}

/** Descriptors above stderr open in this process without close-on-exec. */
export function leakingDescriptors(): number[] {
  return readdirSync('/proc/self/fd')
    .map(Number)
    .filter((fd) => fd > 2 && !hasCloseOnExec(fd))
    .sort((a, b) => a - b);
}

function hasCloseOnExec(fd: number): boolean {
  try {
    const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    return flags !== null && (parseInt(flags[1], 8) & O_CLOEXEC) !== 0;
  } catch {
    return true; // closed meanwhile (the directory listing's own descriptor)
  }
}
