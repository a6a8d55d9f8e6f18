import { ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

/** The built entry point, as the README starts it (`npm test` builds it first). */
export const MAIN = join(__dirname, '..', '..', 'dist', 'src', 'main.js');

/**
 * Starts the service in its own process with only `env` (and PATH). Its output is captured unless
 * `stdout` names a descriptor to hand it instead (a file, a pipe).
 */
export function startService(env: Record<string, string>, options: { stdout?: number; cgroupProcsFile?: string } = {}): ChildProcess {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build (npm test does)`);
  const [file, args] = options.cgroupProcsFile
    ? // joins the cgroup before it becomes the service, as a unit's main process does
      ['/bin/sh', ['-c', 'echo $$ > "$1" && shift && exec "$@"', 'sh', options.cgroupProcsFile, process.execPath, MAIN]]
    : [process.execPath, [MAIN]];
  const child = spawn(file, args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', options.stdout ?? 'pipe', 'pipe'] });
  const chunks: string[] = [];
  child.stdout?.on('data', (chunk: Buffer) => chunks.push(chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => chunks.push(chunk.toString()));
  (child as ChildProcess & { chunks: string[] }).chunks = chunks;
  return child;
}

/** What the process wrote on the descriptors the test captures. */
export function serviceOutput(child: ChildProcess): string {
  return (child as ChildProcess & { chunks: string[] }).chunks.join('');
}

export async function waitForHealth(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the service exited early:\n${serviceOutput(child)}`);
    const ok = await fetch(`${url}/api/health`).then((response) => response.status === 200, () => false);
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`the service did not become healthy:\n${serviceOutput(child)}`);
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
