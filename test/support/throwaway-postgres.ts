import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { freePort } from './service-process';

const run = promisify(execFile);
const BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

/**
 * A PostgreSQL cluster of the test's own, on a free port, that it may stop and start at will
 * (the machine's cluster on 5432 is shared and must never be restarted). Running as root, the
 * server programs run as the `postgres` OS user, which owns the directory; `stop()` removes it all.
 */
export class ThrowawayPostgres {
  private constructor(
    private readonly dir: string,
    readonly port: number,
    /** The database the service uses: postgres://root@127.0.0.1:<port>/mss */
    readonly url: string,
  ) {}

  static async start(): Promise<ThrowawayPostgres> {
    const dir = mkdtempSync(join(tmpdir(), 'mss-pg-'));
    const port = await freePort();
    const pg = new ThrowawayPostgres(dir, port, `postgres://root@127.0.0.1:${port}/mss`);
    try {
      if (process.getuid?.() === 0) {
        const { stdout } = await run('id', ['-u', 'postgres']);
        const { stdout: gid } = await run('id', ['-g', 'postgres']);
        chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
      }
      await pg.pg('initdb', ['-D', pg.dataDir, '-A', 'trust', '-U', 'root', '-E', 'UTF8', '--locale=C', '--no-sync']);
      await pg.startServer();
      const admin = new Client({ connectionString: `postgres://root@127.0.0.1:${port}/postgres` });
      await admin.connect();
      try {
        await admin.query('CREATE DATABASE mss');
      } finally {
        await admin.end();
      }
      return pg;
    } catch (error) {
      await pg.stop();
      throw error;
    }
  }

  private get dataDir(): string {
    return join(this.dir, 'data');
  }

  /**
   * Stops the server as an operator's restart does (`-m fast`: every session is terminated),
   * keeps it down for `downMs`, then starts it again and waits until it accepts connections.
   */
  async restart({ downMs = 1_500 }: { downMs?: number } = {}): Promise<void> {
    await this.pg('pg_ctl', ['-D', this.dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']);
    await sleep(downMs);
    await this.startServer();
  }

  /** Stops the server at once and removes its directory; safe to call whatever state it is in. */
  async stop(): Promise<void> {
    if (existsSync(join(this.dataDir, 'postmaster.pid'))) {
      await this.pg('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop']).catch(() => this.killPostmaster());
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The server's log, for failure messages. */
  log(): string {
    try {
      return readFileSync(join(this.dir, 'server.log'), 'utf8');
    } catch {
      return '';
    }
  }

  private async startServer(): Promise<void> {
    const options = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off`;
    await this.pg('pg_ctl', ['-D', this.dataDir, '-o', options, '-l', join(this.dir, 'server.log'), '-w', '-t', '60', 'start']);
  }

  /** Only the postmaster this cluster's pid file names (pg_ctl could not stop it). */
  private killPostmaster(): void {
    try {
      const pid = Number(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      if (pid > 0) process.kill(pid, 'SIGQUIT');
    } catch {
      // already gone
    }
  }

  private async pg(program: string, args: string[]): Promise<void> {
    const path = join(BIN, program);
    const [file, argv] = process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, args];
    try {
      await run(file, argv, { cwd: this.dir, timeout: 120_000 });
    } catch (error) {
      const { stdout, stderr } = error as { stdout?: string; stderr?: string };
      throw new Error(`${program} ${args.join(' ')} failed: ${(error as Error).message}\n${stdout ?? ''}${stderr ?? ''}\n${this.log().slice(-2000)}`);
    }
  }
}
