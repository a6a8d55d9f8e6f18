import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';

/** Messages from the service to the spawner process. */
export type SpawnerRequest =
  | { type: 'spawn'; id: number; file: string; args: string[]; detached: boolean; tokens: string[] }
  | { type: 'kill'; id: number; signal: NodeJS.Signals }
  | { type: 'release'; id: number };

/** Messages from the spawner process to the service. */
export type SpawnerReport =
  | { type: 'spawned'; id: number; pid: number }
  | { type: 'failed'; id: number; message: string }
  | { type: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null };

/**
 * The program of the spawner process (see SandboxSpawner). It runs as `node -e` source text, built
 * from this function, so it uses nothing but Node's built-in modules, required inside it.
 *
 * For each spawn it connects one socket per stdio descriptor to the service's socket, names each with
 * its token, and hands them to the child as its stdio, then closes its own copies: the child talks to
 * the service directly, and a service end that closes reaches the child as end of file. Processes
 * spawned detached lead their own group, which kill requests signal until the service releases them.
 * Losing the service (the IPC channel) kills every process it spawned and ends the spawner; signals
 * sent to the service's process group are left to the service, which ends the spawner when it stops.
 */
export function spawnerMain(socketPath: string): void {
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  const { connect } = require('node:net') as typeof import('node:net');
  const children = new Map<number, { child: ChildProcess; detached: boolean }>();
  const ignore = () => undefined;

  const report = (message: SpawnerReport) => {
    if (process.connected) process.send!(message);
  };

  const connectWithToken = (token: string) =>
    new Promise<Socket>((resolve, reject) => {
      const socket = connect(socketPath).pause(); // what arrives is the child's to read
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

  const start = async (request: Extract<SpawnerRequest, { type: 'spawn' }>) => {
    const connected = await Promise.allSettled(request.tokens.map(connectWithToken));
    const sockets = connected.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    try {
      const failure = connected.find((result) => result.status === 'rejected');
      if (failure) throw failure.reason;
      const child = spawn(request.file, request.args, { stdio: sockets, env: {}, detached: request.detached });
      child.on('error', (error: Error) => {
        if (child.pid === undefined) report({ type: 'failed', id: request.id, message: error.message });
      });
      if (child.pid === undefined) return;
      children.set(request.id, { child, detached: request.detached });
      report({ type: 'spawned', id: request.id, pid: child.pid });
      child.once('exit', (code, signal) => report({ type: 'exit', id: request.id, code, signal }));
    } catch (error) {
      report({ type: 'failed', id: request.id, message: (error as Error).message });
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  };

  const signal = (id: number, name: NodeJS.Signals) => {
    const entry = children.get(id);
    if (!entry?.child.pid) return;
    const running = entry.child.exitCode === null && entry.child.signalCode === null;
    // A group outlives its leader while members hold on; a lone pid may be reused once it is reaped.
    if (!entry.detached && !running) return;
    try {
      process.kill(entry.detached ? -entry.child.pid : entry.child.pid, name);
    } catch {
      // already gone
    }
  };

  process.on('message', (request: SpawnerRequest) => {
    if (request.type === 'spawn') void start(request);
    else if (request.type === 'kill') signal(request.id, request.signal);
    else children.delete(request.id);
  });
  process.on('disconnect', () => {
    for (const id of children.keys()) signal(id, 'SIGKILL');
    process.exit(0);
  });
  for (const name of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(name, ignore);
}
