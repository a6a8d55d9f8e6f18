import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { epochNow } from './stats';

/** The built entry point (dist/src/main.js), as the README starts it in production. */
const MAIN = join(__dirname, '..', '..', 'src', 'main.js');
const HEALTH_POLL_MS = 10;
const STOP_TIMEOUT_MS = 30_000;
/** Clock ticks per second of /proc/<pid>/stat (USER_HZ, 100 on Linux). */
const CLOCK_TICKS = 100;

/**
 * The service as its own process started from the build (test/support/service-process.ts does the
 * same for jest, which runs from the sources), with only `env` and PATH; its output is kept.
 */
export class BuiltService {
  private readonly chunks: string[] = [];

  private constructor(
    readonly child: ChildProcess,
    /** epochNow() just before the process was spawned. */
    readonly spawnedAt: number,
  ) {
    child.stdout!.on('data', (chunk: Buffer) => this.chunks.push(chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => this.chunks.push(chunk.toString()));
  }

  static start(env: Record<string, string>): BuiltService {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build`);
    const spawnedAt = epochNow();
    const child = spawn(process.execPath, [MAIN], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    return new BuiltService(child, spawnedAt);
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Everything it wrote on stdout and stderr so far (JSON log lines). */
  output(): string {
    return this.chunks.join('');
  }

  /** Polls GET /api/health every 10 ms; returns epochNow() of the first 200. */
  async untilHealthy(url: string, timeoutMs = 120_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.exited) throw new Error(`the service exited early:\n${this.output().slice(-4000)}`);
      const ok = await fetch(`${url}/api/health`).then((response) => response.status === 200, () => false);
      if (ok) return epochNow();
      await sleep(HEALTH_POLL_MS);
    }
    throw new Error(`the service did not become healthy:\n${this.output().slice(-4000)}`);
  }

  /** SIGTERM (a clean shutdown), SIGKILL if it has not exited within 30 s. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const exited = once(this.child, 'exit');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    this.child.kill('SIGTERM');
    await exited;
    clearTimeout(timer);
  }

  /** CPU time (user + system) the process has used so far, in seconds. */
  cpuSeconds(): number {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${this.child.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  }

  residentMiB(): number {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${this.child.pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : Number.NaN;
  }
}

/**
 * Volume filesystems a killed service mounted on the host stay mounted: the next service unmounts,
 * when it stops, only those it mounted itself (sandboxes re-attached without a new create leave theirs).
 */
export function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[1])
    .filter((target): target is string => target !== undefined && target.startsWith(`${dir}/`));
  for (const target of mounts.reverse()) {
    try {
      execFileSync('umount', ['--lazy', target], { stdio: 'pipe' });
    } catch (error) {
      console.error(`could not unmount ${target}: ${(error as Error).message}`);
    }
  }
  if (mounts.length > 0) console.error(`unmounted ${mounts.length} volume filesystems left mounted under the data directory`);
}
