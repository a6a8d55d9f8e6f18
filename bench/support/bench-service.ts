import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { DatabaseKind } from '../../test/support/test-app';

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

/**
 * The service under test in its own Node process (as in production), so that the benchmark's
 * clients, fake model and baselines do not share its event loop.
 */
export class BenchService {
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    readonly adminToken: string,
    readonly dataDir: string,
  ) {}

  static async start(options: { env?: Record<string, string>; database: DatabaseKind }): Promise<BenchService> {
    const env = { LOG_LEVEL: 'info', ...options.env };
    const child = spawn(process.execPath, [join(__dirname, 'serve-app.js'), JSON.stringify({ env, database: options.database })], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => child.kill('SIGKILL'), START_TIMEOUT_MS);
    try {
      const [line] = (await Promise.race([once(lines, 'line'), once(child, 'exit').then(() => [undefined])])) as [string | undefined];
      if (line === undefined) throw new Error('the service under test exited before listening');
      const started = JSON.parse(line) as { url: string; adminToken: string; dataDir: string };
      return new BenchService(child, started.url, started.adminToken, started.dataDir);
    } finally {
      clearTimeout(timer);
      lines.close();
    }
  }

  /**
   * Resident memory of the service process. It matters here: Node starts every child with fork(),
   * whose cost grows with the parent's memory, and each sandbox and exec starts children.
   */
  residentMiB(): number {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${this.child.pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : Number.NaN;
  }

  /** Closes the service's stdin, which makes it shut down and remove its data; kills it if it hangs. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    this.child.stdin!.end();
    await exited;
    clearTimeout(timer);
  }
}
