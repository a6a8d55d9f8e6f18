import type { ChildProcess } from 'node:child_process';
import type { Server, Socket } from 'node:net';

/** Messages from the service to the supervisor, one JSON object per line. */
export type SpawnerRequest =
  | { type: 'spawn'; id: number; file: string; args: string[]; detached: boolean; tokens: string[]; stdioSocket: string }
  | { type: 'kill'; id: number; signal: NodeJS.Signals }
  | { type: 'release'; id: number }
  | { type: 'keep'; id: number; key: string; deadline: number; exitFile: string };

/** Messages from the supervisor to the service. */
export type SpawnerReport =
  | { type: 'hello'; pid: number }
  | { type: 'spawned'; id: number; pid: number }
  | { type: 'failed'; id: number; message: string }
  | { type: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null };

/** What the supervisor writes to a kept process's exit file when it ends, connected or not. */
export interface KeptExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** `deadline`: the supervisor killed it at the deadline it was kept with. */
  reason: 'deadline' | 'exited';
  at: string;
}

/**
 * The program of the supervisor process (see SandboxSpawner). It runs as `node -e` source text,
 * built from this function, so it uses nothing but Node's built-in modules, required inside it.
 *
 * Like containerd's shims and Podman's conmon, it is started detached from the service (its own
 * session, its own cgroups, given as arguments) and outlives it: services connect to its control
 * socket, and what they spawn runs as its children. A process the service asked it to keep (a
 * sandbox's launcher and NAT) survives the service's connection; the supervisor kills it at its
 * deadline (the sandbox's lifetime, even while no service runs) and writes how it ended to its
 * exit file. Everything else dies with the connection that spawned it: nothing may run that no one
 * would see exit. With no connection and nothing kept, it exits after a while.
 *
 * For each spawn it connects one socket per stdio descriptor to the service's stdio socket, names
 * each with its token, and hands them to the child as its stdio, then closes its own copies: the
 * child talks to the service directly, and a service end that closes reaches the child as end of
 * file. Processes spawned detached lead their own group, which kill requests signal.
 */
export function spawnerMain(controlSocket: string, ...cgroupProcsFiles: string[]): void {
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  const { connect, createServer } = require('node:net') as typeof import('node:net');
  const { renameSync, unlinkSync, writeFileSync } = require('node:fs') as typeof import('node:fs');
  const IDLE_EXIT_MS = 10_000;
  const ignore = () => undefined;
  const log = (message: string) => process.stderr.write(`${new Date().toISOString()} supervisor ${process.pid}: ${message}\n`);

  interface Entry {
    child: ChildProcess;
    detached: boolean;
    connection?: Socket;
    kept?: { key: string; exitFile: string; timer: NodeJS.Timeout; deadlineReached: boolean };
  }
  const connections = new Map<Socket, Map<number, Entry>>();
  const kept = new Set<Entry>();
  let idleTimer: NodeJS.Timeout | undefined;

  const report = (connection: Socket | undefined, message: SpawnerReport) => {
    if (connection && !connection.destroyed) connection.write(`${JSON.stringify(message)}\n`);
  };

  const signal = (entry: Entry, name: NodeJS.Signals) => {
    const pid = entry.child.pid;
    if (!pid) return;
    const running = entry.child.exitCode === null && entry.child.signalCode === null;
    // A group outlives its leader while members hold on; a lone pid may be reused once it is reaped.
    if (!entry.detached && !running) return;
    try {
      process.kill(entry.detached ? -pid : pid, name);
    } catch {
      // already gone
    }
  };

  const updateIdleExit = () => {
    clearTimeout(idleTimer);
    if (connections.size > 0 || kept.size > 0) return;
    idleTimer = setTimeout(() => {
      log('nothing to supervise; exiting');
      server.close();
      process.exit(0);
    }, IDLE_EXIT_MS);
  };

  const recordExit = (entry: Entry, code: number | null, name: NodeJS.Signals | null) => {
    if (!entry.kept) return;
    clearTimeout(entry.kept.timer);
    kept.delete(entry);
    const exit: KeptExit = { code, signal: name, reason: entry.kept.deadlineReached ? 'deadline' : 'exited', at: new Date().toISOString() };
    try {
      writeFileSync(`${entry.kept.exitFile}.tmp`, JSON.stringify(exit));
      renameSync(`${entry.kept.exitFile}.tmp`, entry.kept.exitFile);
    } catch (error) {
      log(`could not record the exit of ${entry.kept.key}: ${(error as Error).message}`);
    }
    log(`${entry.kept.key} ended (${name ?? code}, ${exit.reason})`);
    updateIdleExit();
  };

  const connectWithToken = (stdioSocket: string, token: string) =>
    new Promise<Socket>((resolve, reject) => {
      const socket = connect(stdioSocket).pause(); // what arrives is the child's to read
      socket.on('error', ignore);
      socket.once('error', reject);
      socket.write(token, (error) => {
        if (error) return;
        // The child gets the descriptor in blocking mode, as the child's end of a pipe from spawn()
        // would be (Node makes only 0-2 blocking): bwrap, for one, waits on its block descriptor.
        (socket as unknown as { _handle: { setBlocking(blocking: boolean): number } })._handle.setBlocking(true);
        resolve(socket);
      });
    });

  const start = async (connection: Socket, request: Extract<SpawnerRequest, { type: 'spawn' }>) => {
    const connected = await Promise.allSettled(request.tokens.map((token) => connectWithToken(request.stdioSocket, token)));
    const sockets = connected.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    try {
      const failure = connected.find((result) => result.status === 'rejected');
      if (failure) throw failure.reason;
      const child = spawn(request.file, request.args, { stdio: sockets, env: {}, detached: request.detached });
      child.on('error', (error: Error) => {
        if (child.pid === undefined) report(connection, { type: 'failed', id: request.id, message: error.message });
      });
      if (child.pid === undefined) return;
      const entry: Entry = { child, detached: request.detached, connection };
      const owned = connections.get(connection);
      if (!owned) signal(entry, 'SIGKILL'); // the service left while it started
      owned?.set(request.id, entry);
      report(connection, { type: 'spawned', id: request.id, pid: child.pid });
      child.once('exit', (code, name) => {
        report(entry.connection, { type: 'exit', id: request.id, code, signal: name });
        recordExit(entry, code, name);
      });
    } catch (error) {
      report(connection, { type: 'failed', id: request.id, message: (error as Error).message });
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  };

  const keep = (connection: Socket, request: Extract<SpawnerRequest, { type: 'keep' }>) => {
    const entry = connections.get(connection)?.get(request.id);
    if (!entry || entry.kept || entry.child.exitCode !== null || entry.child.signalCode !== null) return;
    const timer = setTimeout(() => {
      entry.kept!.deadlineReached = true;
      signal(entry, 'SIGKILL');
    }, Math.max(0, request.deadline - Date.now()));
    entry.kept = { key: request.key, exitFile: request.exitFile, timer, deadlineReached: false };
    kept.add(entry);
  };

  const handle = (connection: Socket, request: SpawnerRequest) => {
    const owned = connections.get(connection);
    if (request.type === 'spawn') void start(connection, request);
    else if (request.type === 'keep') keep(connection, request);
    else if (request.type === 'kill') {
      const entry = owned?.get(request.id);
      if (entry) signal(entry, request.signal);
    } else owned?.delete(request.id);
  };

  /** The service is gone: what it kept goes on, everything else it spawned is killed. */
  const disconnected = (connection: Socket) => {
    const owned = connections.get(connection);
    connections.delete(connection);
    for (const entry of owned?.values() ?? []) {
      entry.connection = undefined;
      if (!entry.kept) signal(entry, 'SIGKILL');
    }
    log(`a service disconnected; ${kept.size} kept processes go on`);
    updateIdleExit();
  };

  const server = createServer((connection) => {
    connections.set(connection, new Map());
    updateIdleExit();
    connection.on('error', ignore);
    connection.once('close', () => disconnected(connection));
    let buffered = '';
    connection.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        try {
          handle(connection, JSON.parse(line) as SpawnerRequest);
        } catch (error) {
          log(`bad request: ${(error as Error).message}`);
        }
      }
    });
    report(connection, { type: 'hello', pid: process.pid });
  });

  for (const file of cgroupProcsFiles) {
    try {
      writeFileSync(file, String(process.pid));
    } catch (error) {
      log(`could not join ${file}: ${(error as Error).message}`);
    }
  }
  for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGPIPE'] as const) process.on(name, ignore);

  // A live supervisor already answers there: this one is not needed. A stale socket is replaced.
  const probe = connect(controlSocket);
  probe.once('connect', () => {
    probe.destroy();
    process.exit(0);
  });
  probe.once('error', () => {
    try {
      unlinkSync(controlSocket);
    } catch {
      // none there
    }
    server.once('error', (error: Error) => {
      log(`cannot listen on ${controlSocket}: ${error.message}`);
      process.exit(1);
    });
    server.listen(controlSocket, () => {
      log(`listening on ${controlSocket}`);
      updateIdleExit();
    });
  });
}
