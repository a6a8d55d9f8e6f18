import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { chmod, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Logger } from '@nestjs/common';
import { ProviderFailureError } from '../sandbox-provider.errors';
import type { InheritedFdShield } from './inherited-fds';
import { type SpawnerReport, type SpawnerRequest, spawnerMain } from './sandbox-spawner.helper';

const TOKEN_BYTES = 16;
const TOKEN_LENGTH = TOKEN_BYTES * 2;
/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;
const SOCKET_NAME = /^(\d+)-[0-9a-f]+\.sock$/;

export interface SpawnOptions {
  /** How many descriptors, from 0, the child gets as sockets connected to this process. */
  stdioCount: number;
  /** In a new session, leading its own process group: kill() then signals the whole group. */
  detached?: boolean;
}

interface ProcessLink {
  kill(signal: NodeJS.Signals): void;
  setReferenced(referenced: boolean): void;
  release(): void;
}

/**
 * A process the spawner started, seen from the service: the parts of a ChildProcess the local
 * engine uses. Its stdio are sockets connected straight to the process. Like a ChildProcess it
 * emits 'exit' (code, signal), then 'close' (code, signal) once its readable stdio (from
 * descriptor 1 on) have closed too; on exit its stdin is destroyed and unread output drained.
 */
export class SpawnedProcess extends EventEmitter {
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  /** The exit, then each readable stdio socket's close. */
  private closesNeeded: number;

  constructor(
    readonly pid: number,
    readonly stdio: Socket[],
    private readonly link: ProcessLink,
  ) {
    super();
    this.closesNeeded = stdio.length;
    // A short-lived process may have closed an output before this object exists.
    for (const socket of stdio.slice(1)) {
      if (socket.closed) this.closeOne();
      else socket.once('close', () => this.closeOne());
    }
  }

  /** Signals the process, or its whole group when it was spawned detached; nothing once it has closed. */
  kill(signal: NodeJS.Signals): void {
    this.link.kill(signal);
  }

  /** Makes the service wait for this process before it can exit (it does not by default). */
  ref(): void {
    this.link.setReferenced(true);
  }

  unref(): void {
    this.link.setReferenced(false);
  }

  /** Called by the spawner when the process has exited. */
  exited(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.exitCode !== null || this.signalCode !== null) return;
    if (signal) this.signalCode = signal;
    else this.exitCode = code;
    this.stdio[0].destroy();
    this.emit('exit', this.exitCode, this.signalCode);
    // Output nobody reads is drained, so that its end is seen and the process closes.
    process.nextTick(() => {
      for (const socket of this.stdio.slice(1)) if (socket.readable) socket.resume();
    });
    this.closeOne();
  }

  private closeOne(): void {
    if (--this.closesNeeded > 0) return;
    this.link.release();
    this.emit('close', this.exitCode, this.signalCode);
  }
}

interface Helper {
  child: ChildProcess;
  server: Server;
  socketPath: string;
  /** Set by close(): its exit is then no loss. */
  closing: boolean;
  /** Settles once its exit has been handled. */
  gone: Promise<void>;
}

/** A spawn asked of the helper, until its pid and every one of its stdio sockets are known. */
interface PendingSpawn {
  helper: Helper;
  file: string;
  detached: boolean;
  tokens: string[];
  stdio: Array<Socket | undefined>;
  missing: number;
  pid?: number;
  exit?: [code: number | null, signal: NodeJS.Signals | null];
  resolve(process: SpawnedProcess): void;
  reject(error: Error): void;
}

interface LiveProcess {
  helper: Helper;
  process: SpawnedProcess;
  detached: boolean;
  referenced: boolean;
}

/**
 * Starts the processes of the local engine from a small helper process, so that this process never
 * calls spawn() on a request's path: spawn() forks, and blocks the event loop for a time that grows
 * with the parent's resident memory (tens of ms for the service with its embedded database, every
 * stream of the service stalled meanwhile). The helper is started on the first spawn, again on the
 * next spawn after it died, and stopped by close(). The stdio of each child are sockets to a private
 * Unix socket of this process, so output goes from the child to the service without a copy in
 * between, and the service closing its end reaches the child as end of file. When the helper is
 * lost, everything it started is killed: nothing may run that no one would see exit.
 */
export class SandboxSpawner {
  private readonly logger = new Logger(SandboxSpawner.name);
  private readonly pending = new Map<number, PendingSpawn>();
  private readonly byToken = new Map<string, { id: number; index: number }>();
  private readonly live = new Map<number, LiveProcess>();
  private starting?: Promise<Helper>;
  private nextId = 1;

  /** `socketDir` is created with mode 0700; `fdShield` keeps the service's inherited descriptors from the helper. */
  constructor(
    private readonly socketDir: string,
    private readonly fdShield: InheritedFdShield,
  ) {}

  /** Spawns `file args` with an empty environment; resolves once it runs and its stdio are connected. */
  async spawn(file: string, args: string[], options: SpawnOptions): Promise<SpawnedProcess> {
    const helper = await this.runningHelper();
    const id = this.nextId++;
    const detached = options.detached ?? false;
    const tokens = Array.from({ length: options.stdioCount }, () => randomBytes(TOKEN_BYTES).toString('hex'));
    const spawned = new Promise<SpawnedProcess>((resolve, reject) => {
      this.pending.set(id, { helper, file, detached, tokens, stdio: [], missing: tokens.length, resolve, reject });
    });
    tokens.forEach((token, index) => this.byToken.set(token, { id, index }));
    this.updateReferences(helper);
    send(helper, { type: 'spawn', id, file, args, detached, tokens });
    return spawned;
  }

  /** Ends the helper, which kills whatever it still runs, and removes the socket. */
  async close(): Promise<void> {
    const starting = this.starting;
    this.starting = undefined;
    const helper = await starting?.catch(() => undefined);
    if (!helper) return;
    helper.closing = true;
    if (helper.child.connected) helper.child.disconnect();
    await helper.gone;
  }

  private runningHelper(): Promise<Helper> {
    this.starting ??= this.startHelper().catch((error: Error) => {
      this.starting = undefined;
      throw new ProviderFailureError('sandbox', `could not start the sandbox spawner: ${error.message}`);
    });
    return this.starting;
  }

  private async startHelper(): Promise<Helper> {
    const socketPath = await this.newSocketPath();
    const server = createServer((socket) => this.claim(socket));
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
    server.unref();
    await chmod(socketPath, 0o600);
    const child = spawn(process.execPath, ['-e', `(${spawnerMain.toString()})(process.argv[1])`, socketPath], {
      stdio: this.fdShield.stdio(['ignore', 'inherit', 'inherit', 'ipc']),
      env: {},
    });
    let settleGone!: () => void;
    const helper: Helper = { child, server, socketPath, closing: false, gone: new Promise((resolve) => (settleGone = resolve)) };
    const onGone = (code: number | null, signal: NodeJS.Signals | null) => void this.helperExited(helper, code, signal).finally(settleGone);
    child.on('message', (report: SpawnerReport) => this.handle(report));
    child.once('exit', onGone);
    child.on('error', (error) => {
      this.logger.warn(`sandbox spawner: ${error.message}`);
      if (child.pid === undefined) onGone(null, null); // it never ran
    });
    this.updateReferences(helper);
    this.logger.log(`sandbox spawner ${child.pid} started`);
    return helper;
  }

  /** A fresh socket in socketDir, or in a private temporary directory when that path is too long for a socket. */
  private async newSocketPath(): Promise<string> {
    await mkdir(this.socketDir, { recursive: true, mode: 0o700 });
    await chmod(this.socketDir, 0o700);
    await this.removeStaleSockets();
    const name = `${process.pid}-${randomBytes(6).toString('hex')}.sock`;
    const path = join(this.socketDir, name);
    return path.length <= MAX_SOCKET_PATH ? path : join(await mkdtemp(join(tmpdir(), 'sandbox-spawner-')), name);
  }

  /** Sockets left by service processes that ended without closing their spawner. */
  private async removeStaleSockets(): Promise<void> {
    for (const name of await readdir(this.socketDir)) {
      const owner = SOCKET_NAME.exec(name)?.[1];
      if (owner !== undefined && !isRunning(Number(owner))) await rm(join(this.socketDir, name), { force: true });
    }
  }

  /** A connection from the helper: its first bytes are the token saying which stdio of which spawn it is. */
  private claim(socket: Socket): void {
    // A reset (the child closed with input unread) ends the stream as a pipe's end of file would.
    socket.on('error', () => socket.destroy());
    const readToken = () => {
      const token = (socket.read(TOKEN_LENGTH) as Buffer | null)?.toString('latin1');
      if (token === undefined) return;
      socket.removeListener('readable', readToken);
      const owner = this.byToken.get(token);
      const spawn = owner && this.pending.get(owner.id);
      if (!owner || !spawn) return void socket.destroy();
      this.byToken.delete(token);
      spawn.stdio[owner.index] = socket;
      spawn.missing--;
      this.settleIfComplete(owner.id, spawn);
    };
    socket.on('readable', readToken);
  }

  private handle(report: SpawnerReport): void {
    const spawn = this.pending.get(report.id);
    if (!spawn) {
      if (report.type === 'exit') this.live.get(report.id)?.process.exited(report.code, report.signal);
    } else if (report.type === 'spawned') {
      spawn.pid = report.pid;
      this.settleIfComplete(report.id, spawn);
    } else if (report.type === 'failed') {
      this.fail(report.id, spawn, new ProviderFailureError('sandbox', `could not start ${spawn.file}: ${report.message}`));
    } else {
      spawn.exit = [report.code, report.signal];
    }
  }

  private settleIfComplete(id: number, spawn: PendingSpawn): void {
    if (spawn.pid === undefined || spawn.missing > 0) return;
    this.pending.delete(id);
    const process = new SpawnedProcess(spawn.pid, spawn.stdio as Socket[], this.link(id));
    this.live.set(id, { helper: spawn.helper, process, detached: spawn.detached, referenced: false });
    this.updateReferences(spawn.helper);
    spawn.resolve(process);
    const early = spawn.exit;
    // Once the caller, resumed by the resolve, has subscribed to the process's events.
    if (early) setImmediate(() => process.exited(...early));
  }

  private fail(id: number, spawn: PendingSpawn, error: Error): void {
    this.pending.delete(id);
    for (const token of spawn.tokens) this.byToken.delete(token);
    for (const socket of spawn.stdio) socket?.destroy();
    this.updateReferences(spawn.helper);
    spawn.reject(error);
  }

  private link(id: number): ProcessLink {
    return {
      kill: (signal) => {
        const entry = this.live.get(id);
        if (entry) send(entry.helper, { type: 'kill', id, signal });
      },
      setReferenced: (referenced) => {
        const entry = this.live.get(id);
        if (!entry) return;
        entry.referenced = referenced;
        this.updateReferences(entry.helper);
      },
      release: () => {
        const entry = this.live.get(id);
        if (!entry) return;
        this.live.delete(id);
        this.updateReferences(entry.helper);
        send(entry.helper, { type: 'release', id });
      },
    };
  }

  /** The helper holds the service open while a spawn is under way or a referenced process runs. */
  private updateReferences(helper: Helper): void {
    const busy = [...this.pending.values()].some((spawn) => spawn.helper === helper) || [...this.live.values()].some((entry) => entry.helper === helper && entry.referenced);
    if (busy) {
      helper.child.ref();
      helper.child.channel?.ref();
    } else {
      helper.child.unref();
      helper.child.channel?.unref();
    }
  }

  private async helperExited(helper: Helper, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    const lost = [...this.live.values()].filter((entry) => entry.helper === helper);
    if (!helper.closing) {
      this.logger.warn(`sandbox spawner ${helper.child.pid} exited (${signal ?? code}); killing the ${lost.length} processes it ran`);
      const current = this.starting;
      if ((await current?.catch(() => undefined)) === helper && this.starting === current) this.starting = undefined;
      // Orphaned now, they would run unseen (the helper kills them itself when told to close). Whatever
      // still runs in a sandbox after its exec exited dies with the sandbox, its launcher killed here.
      for (const { process, detached } of lost) {
        if (process.exitCode === null && process.signalCode === null) killQuietly(detached ? -process.pid : process.pid);
      }
    } else {
      this.logger.log(`sandbox spawner ${helper.child.pid} stopped`);
    }
    helper.server.close();
    const socketDir = dirname(helper.socketPath);
    await rm(socketDir === this.socketDir ? helper.socketPath : socketDir, { recursive: true, force: true });
    for (const [id, spawn] of this.pending) if (spawn.helper === helper) this.fail(id, spawn, new ProviderFailureError('sandbox', 'the sandbox spawner exited'));
    for (const { process } of lost) process.exited(null, 'SIGKILL');
  }
}

function send(helper: Helper, request: SpawnerRequest): void {
  if (helper.child.connected) helper.child.send(request);
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
