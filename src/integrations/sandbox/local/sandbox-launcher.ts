import { readFile, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { ProviderFailureError, ProviderTimeoutError } from '../sandbox-provider.errors';
import { type IdRange, idMapLine, type LaunchParameters, launchParametersText, READY_LINE } from './sandbox-commands';
import type { SandboxSpawner, SpawnedProcess } from './sandbox-spawner';

const START_TIMEOUT_MS = 15_000;
const ERROR_TAIL_CHARS = 2000;

/**
 * The unshare → sh → bwrap process of one sandbox. Spawned ahead of time it mounts the root and
 * waits; start() hands it the sandbox's parameters and completes bwrap's start: maps the user
 * namespace once bwrap reports the init, then waits for the init to say it is ready.
 */
export class SandboxLauncher {
  private readonly stdio: [Socket, Socket, Socket, Socket, Socket];
  private readonly started: Promise<number>;
  private initPid = 0;
  private errors = '';
  private settle!: { resolve: (pid: number) => void; reject: (error: Error) => void };
  private timer?: NodeJS.Timeout;

  private constructor(
    readonly process: SpawnedProcess,
    private readonly ids: IdRange,
  ) {
    this.stdio = process.stdio.slice(0, 5) as [Socket, Socket, Socket, Socket, Socket];
    this.started = new Promise<number>((resolve, reject) => (this.settle = { resolve, reject }));
    this.started.catch(() => undefined); // a launcher may fail before anyone starts it
    this.listen();
    this.setReferenced(false);
  }

  /** Spawns the launcher with an empty environment; the sandbox's ids will map to `ids` on the host. */
  static async spawn(spawner: SandboxSpawner, argv: string[], ids: IdRange): Promise<SandboxLauncher> {
    return new SandboxLauncher(await spawner.spawn(argv[0], argv.slice(1), { stdioCount: 5 }), ids);
  }

  get exited(): boolean {
    return this.process.exitCode !== null || this.process.signalCode !== null;
  }

  /** Resolves with the host pid of the sandbox's init once it runs. */
  start(parameters: LaunchParameters): Promise<number> {
    this.setReferenced(true);
    this.timer = setTimeout(() => this.fail(new ProviderTimeoutError('sandbox', `the sandbox did not start in time: ${this.errors.trim() || 'no error output'}`)), START_TIMEOUT_MS);
    this.stdio[0].write(launchParametersText(parameters));
    return this.started;
  }

  kill(): void {
    this.process.kill('SIGKILL');
  }

  /** Kills it and resolves once it has exited; held open meanwhile, so the service waits for it. */
  async killAndWait(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise((resolve) => this.process.once('exit', resolve));
    this.process.ref();
    this.kill();
    await exited;
  }

  private listen(): void {
    const [, stdout, stderr, info, block] = this.stdio;
    let infoText = '';
    let output = '';
    // Read to its end: bwrap writes more after the pid, and would die of SIGPIPE on a closed pipe.
    info.on('data', (chunk: Buffer) => {
      infoText += chunk.toString();
      const match = /"child-pid":\s*(\d+)\D/.exec(infoText);
      if (!match || this.initPid !== 0) return;
      this.initPid = -1;
      this.mapUserNamespace(Number(match[1]))
        .then(() => block.end('1', () => block.destroy()))
        .catch((error: Error) => this.fail(new ProviderFailureError('sandbox', `could not map the user namespace: ${error.message}`)));
    });
    stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (!output.includes(READY_LINE) || this.initPid <= 0) return;
      clearTimeout(this.timer);
      this.process.removeListener('close', onEarlyExit);
      // Nothing more is read from the sandbox, nor written to it: it lives on without the service.
      stdout.destroy();
      stderr.destroy();
      this.stdio[0].destroy();
      this.setReferenced(false);
      this.settle.resolve(this.initPid);
    });
    stderr.on('data', (chunk: Buffer) => {
      this.errors = (this.errors + chunk.toString()).slice(-ERROR_TAIL_CHARS);
    });
    const onEarlyExit = () => this.fail(new ProviderFailureError('sandbox', `the sandbox exited while starting: ${this.errors.trim() || 'no error output'}`));
    this.process.once('close', onEarlyExit);
  }

  /** Waiting or running, a launcher does not hold the service open; starting one does. */
  private setReferenced(referenced: boolean): void {
    for (const handle of [this.process, ...this.stdio]) {
      if (referenced) handle.ref();
      else handle.unref();
    }
  }

  private async mapUserNamespace(pidInNamespace: number): Promise<void> {
    const pid = await hostPidOfInit(this.process.pid, pidInNamespace);
    // Sandbox root is host uid ids.base: an unprivileged uid that owns nothing of the host's.
    await writeFile(`/proc/${pid}/uid_map`, idMapLine(this.ids));
    await writeFile(`/proc/${pid}/gid_map`, idMapLine(this.ids));
    this.initPid = pid;
  }

  private fail(error: Error): void {
    clearTimeout(this.timer);
    this.kill();
    this.settle.reject(error);
  }
}

/**
 * bwrap reports its child's pid as seen in the launcher's pid namespace; the host pid is found from
 * the launcher (unshare) → its child, that namespace's pid 1 (bwrap) → bwrap's child with that pid
 * there, pid 1 of the sandbox's own pid namespace.
 */
async function hostPidOfInit(launcherPid: number, pidInNamespace: number): Promise<number> {
  for (const bwrapPid of await childrenOf(launcherPid)) {
    for (const candidate of await childrenOf(bwrapPid)) {
      const status = await readFile(`/proc/${candidate}/status`, 'utf8').catch(() => '');
      if (new RegExp(`^NSpid:.*\\s${pidInNamespace}\\s+1$`, 'm').test(status)) return candidate;
    }
  }
  throw new Error(`no process ${pidInNamespace} below the launcher ${launcherPid}`);
}

async function childrenOf(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  return text.split(' ').filter((entry) => entry.trim() !== '').map(Number);
}
