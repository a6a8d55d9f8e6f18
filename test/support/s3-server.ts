import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { S3Settings } from '../../src/integrations/storage/s3-object-store';

/**
 * Runs s3rver in a child process, so that its memory does not count against the process under test
 * and it can be killed outright (a storage outage mid-operation) and started again on the same data.
 */
const SERVER_SCRIPT = `
const S3rver = require(process.argv[1]);
const { port, directory, buckets } = JSON.parse(process.argv[2]);
new S3rver({ address: '127.0.0.1', port, directory, silent: true, configureBuckets: buckets.map((name) => ({ name })) })
  .run()
  .then((address) => process.stdout.write(JSON.stringify({ port: address.port }) + '\\n'))
  .catch((error) => { process.stderr.write(String((error && error.stack) || error)); process.exit(1); });
`;

const STARTUP_TIMEOUT_MS = 15_000;

export class S3TestServer {
  static readonly accessKeyId = 'S3RVER';
  static readonly secretAccessKey = 'S3RVER';

  private child?: ChildProcess;
  private port = 0;

  private constructor(private readonly directory: string, private readonly buckets: string[]) {}

  /** Starts a server on 127.0.0.1 with a random port and a fresh temporary directory. */
  static async start(buckets: string[]): Promise<S3TestServer> {
    const server = new S3TestServer(await mkdtemp(join(tmpdir(), 's3rver-')), buckets);
    await server.restart();
    return server;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Settings for S3ObjectStore pointing at this server. */
  get settings(): S3Settings {
    return { endpoint: this.endpoint, region: 'us-east-1', accessKeyId: S3TestServer.accessKeyId, secretAccessKey: S3TestServer.secretAccessKey, forcePathStyle: true };
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Kills the server at once (open requests fail as in an outage); the data stays for restart(). */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
  }

  /** Starts the server again on the same port and data (the first start picks the port). */
  async restart(): Promise<void> {
    await this.stop();
    const options = JSON.stringify({ port: this.port, directory: this.directory, buckets: this.buckets });
    const child = spawn(process.execPath, ['-e', SERVER_SCRIPT, require.resolve('s3rver'), options], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.port = await readPort(child);
  }

  async dispose(): Promise<void> {
    await this.stop();
    await rm(this.directory, { recursive: true, force: true });
  }
}

async function readPort(child: ChildProcess): Promise<number> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const lines = createInterface({ input: child.stdout! });
  const timeout = setTimeout(() => child.kill('SIGKILL'), STARTUP_TIMEOUT_MS);
  try {
    const [line] = (await Promise.race([once(lines, 'line'), once(child, 'exit').then(() => [undefined])])) as [string | undefined];
    if (line === undefined) throw new Error(`s3rver did not start: ${stderr.trim() || 'exited'}`);
    return (JSON.parse(line) as { port: number }).port;
  } finally {
    clearTimeout(timeout);
    lines.close();
  }
}
