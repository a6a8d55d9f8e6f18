import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ModalClient } from 'modal';
import { AppConfig } from '../src/config/app-config';
import type { SandboxProcess, SandboxSpec } from '../src/integrations/sandbox/sandbox-provider';
import { CLAUDE_CODE_VERSION } from '../src/integrations/sandbox/modal/modal-image';
import { ModalSandboxProvider, modalVolumeName } from '../src/integrations/sandbox/modal/modal-sandbox.provider';
import { liveSuiteName, modalLiveEnvironment } from './support/modal-live';

// Talks to the real Modal API. Runs only with MODAL_TOKEN_ID and MODAL_TOKEN_SECRET set (and
// MODAL_ENVIRONMENT when the workspace has no default), and never against a MODAL_SERVER_URL that is
// not Modal's (the fake control plane has its own suites): see test/support/modal-live.ts. Otherwise
// the suite is reported as skipped, with the reason in its name. It creates its sandboxes under the
// fixed account id below, in a volume of its own that it deletes at the end. Modal's JS SDK cannot
// delete apps, so the app `app-modal-live-test` stays and is reused by the next run.

const live = modalLiveEnvironment();

(live.env ? describe : describe.skip)(liveSuiteName('Modal live suite', live), () => {
  jest.setTimeout(20 * 60_000);
  const accountId = 'modal-live-test';
  const volumeName = `live-${randomBytes(4).toString('hex')}`;
  let config: AppConfig;
  let provider: ModalSandboxProvider;
  const created: string[] = [];

  beforeAll(() => {
    config = AppConfig.fromEnvironment({ ...live.env });
    provider = new ModalSandboxProvider(config);
  });

  function spec(sandboxId: string, overrides: Partial<SandboxSpec> = {}): SandboxSpec {
    return {
      sandboxId,
      accountId,
      imageBase: 'alpine:3.20',
      dockerfileCommands: [],
      volumeName,
      volumeMountPath: '/data',
      workdir: '/data',
      env: { LIVE: '1' },
      secrets: [],
      network: { mode: 'internet', cidrAllowlist: [], allowedDomains: [] },
      timeoutSeconds: 600,
      ...overrides,
    };
  }

  async function create(sandboxSpec: SandboxSpec): Promise<string> {
    const { providerSandboxId } = await provider.create(sandboxSpec);
    created.push(providerSandboxId);
    return providerSandboxId;
  }

  async function output(process: SandboxProcess): Promise<{ stdout: string; stderr: string; exitCode: number; timedOut: boolean }> {
    const [stdout, stderr, exit] = await Promise.all([collect(process.stdout), collect(process.stderr), process.wait()]);
    return { stdout, stderr, ...exit };
  }

  async function collect(stream: Readable): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }

  async function terminated(providerSandboxId: string): Promise<void> {
    await provider.terminate(providerSandboxId);
    for (let attempt = 0; attempt < 60; attempt++) {
      if ((await provider.status(providerSandboxId)).status !== 'running') return;
      await sleep(1000);
    }
    throw new Error(`sandbox ${providerSandboxId} still runs after terminate`);
  }

  afterAll(async () => {
    if (!provider) return;
    for (const id of created) await provider.terminate(id).catch((error: unknown) => console.warn(`terminate ${id}: ${String(error)}`));
    const client = new ModalClient({ tokenId: config.modal.tokenId, tokenSecret: config.modal.tokenSecret, environment: config.modal.environment });
    await client.volumes.delete(modalVolumeName(accountId, volumeName), { allowMissing: true });
    client.close();
    provider.onModuleDestroy();
  });

  it('builds a custom image step by step and runs in it', async () => {
    const { providerSandboxId } = await provider.create(spec('live-image', { dockerfileCommands: ['RUN echo built > /etc/built-marker', 'ENV GREETING=hello-modal'] }));
    created.push(providerSandboxId);

    const result = await output(await provider.exec(providerSandboxId, { argv: ['sh', '-c', 'echo "$GREETING $LIVE $(cat /etc/built-marker) $(pwd)"'] }));

    expect(result).toEqual({ stdout: 'hello-modal 1 built /data\n', stderr: '', exitCode: 0, timedOut: false });
    await expect(provider.status(providerSandboxId)).resolves.toEqual({ status: 'running' });
    await terminated(providerSandboxId);
  });

  it('streams exec output while the process runs, bytes intact, with its exit code', async () => {
    const id = await create(spec('live-stream'));
    const process = await provider.exec(id, {
      argv: ['sh', '-c', "for i in 1 2 3; do printf 'line-%s h\\303\\251llo\\n' $i; sleep 2; done; echo oops >&2; exit 3"],
    });
    const arrivals: number[] = [];
    const chunks: Buffer[] = [];
    const stderr = collect(process.stderr);
    for await (const chunk of process.stdout) {
      arrivals.push(Date.now());
      chunks.push(chunk as Buffer);
    }

    expect(Buffer.concat(chunks).toString('utf8')).toBe('line-1 héllo\nline-2 héllo\nline-3 héllo\n');
    expect(arrivals[arrivals.length - 1] - arrivals[0]).toBeGreaterThan(2000);
    await expect(stderr).resolves.toBe('oops\n');
    await expect(process.wait()).resolves.toEqual({ exitCode: 3, timedOut: false });
  });

  it('stops an exec at its timeout and kills one on request', async () => {
    const id = await create(spec('live-kill'));
    const timed = await output(await provider.exec(id, { argv: ['sleep', '60'], timeoutSeconds: 2 }));
    expect(timed).toMatchObject({ timedOut: true });
    expect(timed.exitCode).not.toBe(0);

    const started = Date.now();
    const long = await provider.exec(id, { argv: ['sh', '-c', 'sleep 120 & wait'] });
    await sleep(2000);
    await long.kill();
    const killed = await output(long);
    expect(killed).toMatchObject({ timedOut: false });
    expect(killed.exitCode).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(60_000);
  });

  it('keeps a file on the volume across two sandboxes', async () => {
    const first = await create(spec('live-volume-1'));
    const files = provider.volume(accountId, volumeName, first);
    await files.write('notes/hello.txt', Readable.from([Buffer.from('persisted ✓\n')]), 0o640);
    expect(await collect(await files.openRead('notes/hello.txt'))).toBe('persisted ✓\n');
    await terminated(first);

    const second = await create(spec('live-volume-2'));
    const again = provider.volume(accountId, volumeName, second);

    expect(await again.stat('notes/hello.txt')).toMatchObject({ type: 'file', size: Buffer.byteLength('persisted ✓\n'), mode: 0o640 });
    expect(await collect(await again.openRead('notes/hello.txt'))).toBe('persisted ✓\n');
    expect(await output(await provider.exec(second, { argv: ['cat', 'notes/hello.txt'] }))).toEqual({ stdout: 'persisted ✓\n', stderr: '', exitCode: 0, timedOut: false });
    await terminated(second);
    await expect(provider.reattach(second, spec('live-volume-2'))).resolves.toMatchObject({ status: 'terminated' });
  });

  it('blocks the network when asked and lists its sandboxes by tag', async () => {
    const id = await create(spec('live-offline', { network: { mode: 'none', cidrAllowlist: [], allowedDomains: [] } }));
    const offline = await output(await provider.exec(id, { argv: ['wget', '-q', '-T', '5', '-O', '-', 'https://example.com'] }));
    expect(offline.exitCode).not.toBe(0);
    await expect(provider.runningSandboxIds(accountId)).resolves.toContain(id);
    await terminated(id);
  });

  it('provides the Claude Code CLI in the default image', async () => {
    const id = await create(spec('live-default-image', { imageBase: undefined }));
    const version = await output(await provider.exec(id, { argv: ['claude', '--version'] }));
    expect(version.exitCode).toBe(0);
    expect(version.stdout).toContain(CLAUDE_CODE_VERSION);
    await terminated(id);
  });
});
