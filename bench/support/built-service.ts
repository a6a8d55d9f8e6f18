import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { epochNow } from './stats';

/** The built entry point (dist/src/main.js), as the README starts it in production. */
const MAIN = join(__dirname, '..', '..', 'src', 'main.js');

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
}
