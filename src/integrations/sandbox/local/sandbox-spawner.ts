import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
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
/** How long a supervisor just started may take to answer on its control socket. */
const SUPERVISOR_START_MS = 10_000;
const SUPERVISOR_POLL_MS = 20;

export interface SpawnOptions {
  /** How many descriptors, from 0, the child gets as sockets connected to this process. */
  stdioCount: number;
  /** In a new session, leading its own process group: kill() then signals the whole group. */
  detached?: boolean;
}

interface ProcessLink {
  kill(signal: NodeJS.Signals): void;
  keep(options: KeepOptions): void;
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

  /**
   * Asks the supervisor to keep it beyond this service's connection, until it ends or its
   * deadline, and to record its end in the exit file. This object then no longer reports its exit
   * once the connection is gone.
   */
  keep(options: KeepOptions): void {
    this.link.keep(options);
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
  /** The control connection to the supervisor. */
  connection: Socket;
  /** The supervisor's pid. */
  pid: number;
  /** This service's stdio socket, where the supervisor connects the stdio of each child. */
  server: Server;
  socketPath: string;
  /** Set by close(): losing it is then no loss. */
  closing: boolean;
  /** Settles once its loss has been handled. */
  gone: Promise<void>;
}

/** A spawn asked of the supervisor, until its pid and every one of its stdio sockets are known. */
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
  kept: boolean;
}

/** How a process the supervisor keeps beyond this service's connection ends at the latest, and where it records its end. */
export interface KeepOptions {
  /** Names it in the supervisor's log. */
  key: string;
  /** Epoch ms at which the supervisor kills it (and its group), service or not. */
  deadline: number;
  /** Receives a KeptExit (JSON) when it ends. */
  exitFile: string;
}

/**
 * Starts the processes of the local engine from the sandboxes' supervisor, a small process that
 * outlives the service (see spawnerMain): it is started detached, in cgroups of its own (beside the
 * service's, so that stopping the service's unit does not reach it), on the first spawn, and later
 * services connect to the one already running. This process never calls spawn() on a request's
 * path: spawn() forks, and blocks the event loop for a time that grows with the parent's resident
 * memory. The stdio of each child are sockets to a private Unix socket of this process, so output
 * goes from the child to the service without a copy in between, and the service closing its end
 * reaches the child as end of file. When the connection is lost, everything spawned through it is
 * killed except what it asked the supervisor to keep (the sandboxes themselves).
 */
export class SandboxSpawner {
  private readonly logger = new Logger(SandboxSpawner.name);
  private readonly pending = new Map<number, PendingSpawn>();
  private readonly byToken = new Map<string, { id: number; index: number }>();
  private readonly live = new Map<number, LiveProcess>();
  private starting?: Promise<Helper>;
  private nextId = 1;

  /**
   * `socketDir` is created with mode 0700 and holds the supervisor's control socket, its log and
   * this service's stdio socket; `fdShield` keeps the service's inherited descriptors from the
   * supervisor; `supervisorCgroups` makes the supervisor's cgroups and returns their procs files.
   */
  constructor(
    private readonly socketDir: string,
    private readonly fdShield: InheritedFdShield,
    private readonly supervisorCgroups: () => Promise<string[]> = async () => [],
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
    send(helper, { type: 'spawn', id, file, args, detached, tokens, stdioSocket: helper.socketPath });
    return spawned;
  }

  /** The supervisor's pid, starting it when none runs. */
  async supervisorPid(): Promise<number> {
    return (await this.runningHelper()).pid;
  }

  /** Lets go of the supervisor, which kills whatever this service spawned except what it keeps. */
  async close(): Promise<void> {
    const starting = this.starting;
    this.starting = undefined;
    const helper = await starting?.catch(() => undefined);
    if (!helper) return;
    helper.closing = true;
    helper.connection.end();
    await helper.gone;
  }

  private runningHelper(): Promise<Helper> {
    this.starting ??= this.connectHelper().catch((error: Error) => {
      this.starting = undefined;
      throw new ProviderFailureError('sandbox', `could not reach the sandbox supervisor: ${error.message}`);
    });
    return this.starting;
  }

  private async connectHelper(): Promise<Helper> {
    await mkdir(this.socketDir, { recursive: true, mode: 0o700 });
    await chmod(this.socketDir, 0o700);
    const controlPath = await this.controlSocketPath();
    const socketPath = await this.newSocketPath();
    const server = createServer((socket) => this.claim(socket));
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
    server.unref();
    await chmod(socketPath, 0o600);
    try {
      const running = await connectSupervisor(controlPath).catch(() => undefined);
      const { connection, pid } = running ?? (await this.startSupervisor(controlPath));
      let settleGone!: () => void;
      const helper: Helper = { connection, pid, server, socketPath, closing: false, gone: new Promise((resolve) => (settleGone = resolve)) };
      readLines(connection, (line) => this.handle(JSON.parse(line) as SpawnerReport));
      connection.on('error', () => undefined);
      connection.once('close', () => void this.helperLost(helper).finally(settleGone));
      this.updateReferences(helper);
      this.logger.log(`connected to the sandbox supervisor ${pid}`);
      return helper;
    } catch (error) {
      server.close();
      await rm(socketPath, { force: true });
      throw error;
    }
  }

  /** Starts a supervisor detached from this process (own session, own cgroups) and connects to it. */
  private async startSupervisor(controlPath: string): Promise<{ connection: Socket; pid: number }> {
    const cgroupFiles = await this.supervisorCgroups();
    const logFd = openSync(join(this.socketDir, 'supervisor.log'), 'a', 0o600);
    try {
      // Through a shell that exits at once: the supervisor is nobody's child but init's (or the subreaper's), as a daemon is.
      const supervisor = [process.execPath, '-e', `(${spawnerMain.toString()})(...process.argv.slice(1))`, controlPath, ...cgroupFiles];
      const child = spawn('/bin/sh', ['-c', '"$@" &', 'sh', ...supervisor], {
        stdio: this.fdShield.stdio(['ignore', logFd, logFd]),
        env: {},
        detached: true,
      });
      child.on('error', (error) => this.logger.warn(`sandbox supervisor: ${error.message}`));
      child.unref();
      this.logger.log('sandbox supervisor started');
    } finally {
      closeSync(logFd);
    }
    const deadline = Date.now() + SUPERVISOR_START_MS;
    for (;;) {
      try {
        return await connectSupervisor(controlPath);
      } catch (error) {
        if (Date.now() > deadline) throw error;
      }
      await sleep(SUPERVISOR_POLL_MS);
    }
  }

  /** The control socket in socketDir, or, when that path is too long for a socket, in a private directory named after it. */
  private async controlSocketPath(): Promise<string> {
    const path = join(this.socketDir, 'supervisor.sock');
    if (path.length <= MAX_SOCKET_PATH) return path;
    const dir = join(tmpdir(), `sandbox-supervisor-${createHash('sha256').update(this.socketDir).digest('hex').slice(0, 16)}`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const owner = await stat(dir);
    if (owner.uid !== process.getuid?.() || (owner.mode & 0o077) !== 0) throw new Error(`${dir} is not a private directory of this user`);
    return join(dir, 'supervisor.sock');
  }

  /** A fresh socket in socketDir, or in a private temporary directory when that path is too long for a socket. */
  private async newSocketPath(): Promise<string> {
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

  /** A connection from the supervisor: its first bytes are the token saying which stdio of which spawn it is. */
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
    if (report.type === 'hello') return;
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
    this.live.set(id, { helper: spawn.helper, process, detached: spawn.detached, referenced: false, kept: false });
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
      keep: (options) => {
        const entry = this.live.get(id);
        if (!entry) return;
        entry.kept = true;
        send(entry.helper, { type: 'keep', id, ...options });
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

  /** The connection holds the service open while a spawn is under way or a referenced process runs. */
  private updateReferences(helper: Helper): void {
    const busy = [...this.pending.values()].some((spawn) => spawn.helper === helper) || [...this.live.values()].some((entry) => entry.helper === helper && entry.referenced);
    if (busy) helper.connection.ref();
    else helper.connection.unref();
  }

  /**
   * The connection ended (close(), or the supervisor died). Kept processes go on unseen by this
   * object (their owner watches them otherwise); the rest are gone, killed here too in case the
   * supervisor died without killing them.
   */
  private async helperLost(helper: Helper): Promise<void> {
    const lost = [...this.live.entries()].filter(([, entry]) => entry.helper === helper);
    if (!helper.closing) {
      this.logger.warn(`lost the sandbox supervisor ${helper.pid}; killing the ${lost.filter(([, entry]) => !entry.kept).length} processes it ran for this service`);
      const current = this.starting;
      if ((await current?.catch(() => undefined)) === helper && this.starting === current) this.starting = undefined;
      for (const [, { process, detached, kept }] of lost) {
        if (!kept && process.exitCode === null && process.signalCode === null) killQuietly(detached ? -process.pid : process.pid);
      }
    }
    helper.server.close();
    const socketDir = dirname(helper.socketPath);
    await rm(socketDir === this.socketDir ? helper.socketPath : socketDir, { recursive: true, force: true });
    for (const [id, spawn] of this.pending) if (spawn.helper === helper) this.fail(id, spawn, new ProviderFailureError('sandbox', 'the sandbox supervisor went away'));
    for (const [id, { process, kept }] of lost) {
      this.live.delete(id);
      if (!kept) process.exited(null, 'SIGKILL');
    }
  }
}

/** Connects to the supervisor's control socket and waits for its hello. */
function connectSupervisor(path: string): Promise<{ connection: Socket; pid: number }> {
  return new Promise((resolve, reject) => {
    const connection = connect(path);
    const timer = setTimeout(() => fail(new Error('the supervisor did not answer')), SUPERVISOR_START_MS);
    const fail = (error: Error) => {
      clearTimeout(timer);
      connection.destroy();
      reject(error);
    };
    connection.once('error', fail);
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const newline = buffered.indexOf('\n');
      if (newline < 0) return;
      clearTimeout(timer);
      connection.removeListener('data', onData);
      connection.removeListener('error', fail);
      const rest = buffered.slice(newline + 1);
      const hello = JSON.parse(buffered.slice(0, newline)) as SpawnerReport;
      if (hello.type !== 'hello') return fail(new Error('unexpected first message from the supervisor'));
      connection.pause();
      if (rest !== '') connection.unshift(Buffer.from(rest));
      resolve({ connection, pid: hello.pid });
    };
    connection.on('data', onData);
  });
}

/** Calls onLine for every newline-terminated line the socket delivers. */
function readLines(socket: Socket, onLine: (line: string) => void): void {
  let buffered = '';
  socket.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (line !== '') onLine(line);
    }
  });
  socket.resume();
}

function send(helper: Helper, request: SpawnerRequest): void {
  if (!helper.connection.destroyed && helper.connection.writable) helper.connection.write(`${JSON.stringify(request)}\n`);
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
