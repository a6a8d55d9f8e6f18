import { constants } from 'node:os';
import type { Readable } from 'node:stream';
import type { ExecExit, SandboxProcess } from '../sandbox-provider';
import type { SandboxSpawner, SpawnedProcess } from './sandbox-spawner';

/** Exit code reported when a time limit killed the process, as GNU timeout and Modal do. */
export const TIMEOUT_EXIT_CODE = 124;

/** The host exit code of a process: its own code, or 128 + the number of the signal that ended it. */
export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
}

/**
 * One command in a sandbox. It is spawned before it is known, and joins the sandbox's cgroups; begin()
 * sends it the sandbox's init (which nsenter enters) and the script of the sandbox-side shell
 * (environment, workdir, command). The host-side shell leads its own process group, which the
 * command and its children inherit, so kill() reaches all of them.
 */
export class LocalSandboxProcess implements SandboxProcess {
  readonly stdout: Readable;
  readonly stderr: Readable;
  private readonly exit: Promise<ExecExit>;
  private timedOut = false;
  private closed = false;
  private timer?: NodeJS.Timeout;

  private constructor(private readonly child: SpawnedProcess) {
    this.stdout = child.stdio[1];
    this.stderr = child.stdio[2];
    this.exit = new Promise((resolve) => {
      const finish = (exitCode: number) => {
        this.closed = true;
        clearTimeout(this.timer);
        resolve({ exitCode: this.timedOut ? TIMEOUT_EXIT_CODE : exitCode, timedOut: this.timedOut });
      };
      child.once('close', (code: number | null, signal: NodeJS.Signals | null) => finish(exitCodeOf(code, signal)));
    });
  }

  /** Spawns `sh -c hostScript` on the host with an empty environment. Until begin() it does not hold the service open. */
  static async spawn(spawner: SandboxSpawner, sh: string, hostScript: string): Promise<LocalSandboxProcess> {
    const process = new LocalSandboxProcess(await spawner.spawn(sh, ['-c', hostScript], { stdioCount: 3, detached: true }));
    process.setReferenced(false);
    return process;
  }

  /** Whether it is gone (a spare can die before it is used, e.g. killed from inside the sandbox). */
  get exited(): boolean {
    return this.closed || this.child.exitCode !== null || this.child.signalCode !== null;
  }

  begin(initPid: number, sandboxScript: string, timeoutSeconds?: number): this {
    this.setReferenced(true);
    if (timeoutSeconds) this.timer = setTimeout(() => this.expire(), timeoutSeconds * 1000);
    this.child.stdio[0].end(`${initPid}\n${sandboxScript}`);
    return this;
  }

  wait(): Promise<ExecExit> {
    return this.exit;
  }

  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exit;
  }

  private setReferenced(referenced: boolean): void {
    for (const handle of [this.child, ...this.child.stdio]) {
      if (referenced) handle.ref();
      else handle.unref();
    }
  }

  private expire(): void {
    this.timedOut = true;
    this.child.kill('SIGKILL');
  }
}

/** Runs a process to completion, keeping the last `tailBytes` of its combined output. */
export async function runCapturingTail(process: SandboxProcess, tailBytes: number): Promise<{ exitCode: number; outputTail: string }> {
  let tail = Buffer.alloc(0);
  const keep = (chunk: Buffer) => {
    tail = Buffer.concat([tail, chunk]);
    if (tail.length > tailBytes) tail = tail.subarray(tail.length - tailBytes);
  };
  process.stdout.on('data', keep);
  process.stderr.on('data', keep);
  const { exitCode } = await process.wait();
  return { exitCode, outputTail: tail.toString('utf8') };
}
