import { Logger } from '@nestjs/common';
import { App, CloudBucketMount, InvalidError, NotFoundError, ResourceExhaustedError, Secret, Volume } from 'modal';
import type { Readable } from 'node:stream';
import { AppConfig } from '../../../config/app-config';
import type { SandboxSpec } from '../sandbox-provider';
import {
  ImageStepFailedError,
  ProviderConflictError,
  ProviderExhaustedError,
  ProviderInvalidError,
  ProviderNotFoundError,
  ProviderTimeoutError,
  ProviderUnavailableError,
  SandboxGoneError,
  SecretNotFoundError,
  UnsupportedImageError,
  UnsupportedNetworkPolicyError,
} from '../sandbox-provider.errors';
import { assertModalConfigured } from './modal-client';
import { EXEC_MARKER_ENV, killByMarkerArgv } from './modal-exec-process';
import { DEFAULT_MODAL_BASE_IMAGE, DEFAULT_MODAL_IMAGE_COMMANDS } from './modal-image';
import { ModalSandboxProvider, modalVolumeName } from './modal-sandbox.provider';
import { ModalVolumeAccess } from './modal-volume-access';
import { type FakeModalClient, type FakeSandbox, fakeImage, fakeModalClient, fakeProcess, fakeSandbox, never } from './testing/fake-modal';

const ACCOUNT = 'acc-1';

function config(extra: Record<string, string> = {}): AppConfig {
  return AppConfig.fromEnvironment({ MODAL_TOKEN_ID: 'ak-test', MODAL_TOKEN_SECRET: 'as-test', MODAL_CALL_TIMEOUT_SECONDS: '5', ...extra });
}

function spec(overrides: Partial<SandboxSpec> = {}): SandboxSpec {
  return {
    sandboxId: 'sb-1',
    accountId: ACCOUNT,
    dockerfileCommands: [],
    volumeName: 'default',
    volumeMountPath: '/workspace',
    workdir: '/workspace',
    env: { LANG: 'C.UTF-8' },
    secrets: [],
    network: { mode: 'internet', cidrAllowlist: [], allowedDomains: [] },
    timeoutSeconds: 600,
    ...overrides,
  };
}

async function readAll(stream: Readable): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return chunks;
}

describe('ModalSandboxProvider', () => {
  let modal: FakeModalClient;
  let provider: ModalSandboxProvider;
  const app = new App('ap-1', `app-${ACCOUNT}`);
  const volume = new Volume('vo-1', `volume-${ACCOUNT}`);

  beforeEach(() => {
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    modal = fakeModalClient();
    provider = new ModalSandboxProvider(config(), modal);
  });
  afterEach(() => {
    jest.restoreAllMocks();
    jest.useRealTimers();
  });

  /** Queues the SDK answers of a sandbox creation with the default image; returns its parts. */
  function expectDefaultCreation(sandbox: FakeSandbox) {
    const registryImage = fakeImage('registry');
    const defaultImage = fakeImage('default');
    const builtImage = fakeImage('built');
    modal.apps.fromName.mockResolvedValueOnce(app);
    modal.images.fromRegistry.mockReturnValueOnce(registryImage);
    registryImage.dockerfileCommands.mockReturnValueOnce(defaultImage);
    defaultImage.build.mockResolvedValueOnce(builtImage);
    modal.volumes.fromName.mockResolvedValueOnce(volume);
    modal.sandboxes.create.mockResolvedValueOnce(sandbox);
    return { registryImage, defaultImage, builtImage };
  }

  async function createdSandbox(overrides: Partial<SandboxSpec> = {}): Promise<FakeSandbox> {
    const sandbox = fakeSandbox('sb-modal-1');
    expectDefaultCreation(sandbox);
    await provider.create(spec(overrides));
    return sandbox;
  }

  describe('create', () => {
    it.each([undefined, 'host'])('builds the documented default image when imageBase is %s and tags the sandbox', async (imageBase) => {
      const sandbox = fakeSandbox('sb-modal-1');
      const { registryImage, defaultImage, builtImage } = expectDefaultCreation(sandbox);

      const handle = await provider.create(spec({ imageBase }));

      expect(modal.apps.fromName).toHaveBeenCalledWith(`app-${ACCOUNT}`, { createIfMissing: true });
      expect(modal.images.fromRegistry).toHaveBeenCalledWith(DEFAULT_MODAL_BASE_IMAGE);
      expect(registryImage.dockerfileCommands).toHaveBeenCalledWith([...DEFAULT_MODAL_IMAGE_COMMANDS]);
      expect(defaultImage.build).toHaveBeenCalledWith(app);
      expect(modal.volumes.fromName).toHaveBeenCalledWith(`volume-${ACCOUNT}`, { createIfMissing: true });
      expect(modal.sandboxes.create).toHaveBeenCalledWith(app, builtImage, {
        workdir: '/workspace',
        env: { LANG: 'C.UTF-8' },
        volumes: { '/workspace': volume },
        timeoutMs: 600_000,
        tags: { account_id: ACCOUNT, sandbox_id: 'sb-1' },
      });
      expect(handle).toEqual({
        providerSandboxId: 'sb-modal-1',
        limits: { lifetime_seconds: 600, max_processes: null, memory_bytes: null, cpu_cores: null, disk_bytes: null, exec_output_bytes: expect.any(Number) },
      });
    });

    it('documents a default image with the tools and the pinned Claude Code CLI', () => {
      expect(DEFAULT_MODAL_BASE_IMAGE).toBe('node:20-bookworm-slim');
      expect(DEFAULT_MODAL_IMAGE_COMMANDS.join('\n')).toMatch(/apt-get install .*bash git ripgrep ca-certificates/);
      expect(DEFAULT_MODAL_IMAGE_COMMANDS.join('\n')).toContain('npm install -g @anthropic-ai/claude-code@2.1.330');
    });

    it('passes a custom image with each Dockerfile command built as its own step, and every other option', async () => {
      provider = new ModalSandboxProvider(config({ S3_ENDPOINT: 'https://s3.eu-west-1.amazonaws.com' }), modal);
      const registryImage = fakeImage('registry');
      const base = fakeImage('base');
      const stepOne = fakeImage('step-1');
      const builtOne = fakeImage('built-1');
      const stepTwo = fakeImage('step-2');
      const builtTwo = fakeImage('built-2');
      const github = new Secret('st-1', 'github');
      const npm = new Secret('st-2', 'npm');
      const s3 = new Secret('st-3', 's3-bucket');
      const bucket = new CloudBucketMount('snapshots', s3, true, false, undefined, `${ACCOUNT}/`, undefined, 1 as never);
      const dataVolume = new Volume('vo-2', `${ACCOUNT}-data`);
      const sandbox = fakeSandbox('sb-modal-2');
      modal.apps.fromName.mockResolvedValueOnce(app);
      modal.images.fromRegistry.mockReturnValueOnce(registryImage);
      registryImage.build.mockResolvedValueOnce(base);
      base.dockerfileCommands.mockReturnValueOnce(stepOne);
      stepOne.build.mockResolvedValueOnce(builtOne);
      builtOne.dockerfileCommands.mockReturnValueOnce(stepTwo);
      stepTwo.build.mockResolvedValueOnce(builtTwo);
      modal.volumes.fromName.mockResolvedValueOnce(dataVolume);
      modal.secrets.fromName.mockResolvedValueOnce(github).mockResolvedValueOnce(npm).mockResolvedValueOnce(s3);
      modal.cloudBucketMounts.create.mockReturnValueOnce(bucket);
      modal.sandboxes.create.mockResolvedValueOnce(sandbox);
      const progress: unknown[] = [];

      await provider.create(
        spec({
          onProgress: (reported) => progress.push(reported),
          imageBase: 'python:3.12-slim',
          dockerfileCommands: ['RUN pip install requests', 'ENV MODE=test'],
          volumeName: 'data',
          volumeMountPath: '/data',
          workdir: '/data/src',
          env: { A: '1' },
          secrets: [
            { name: 'github', values: { GITHUB_TOKEN: 'ghp_x' } },
            { name: 'npm', values: { NPM_TOKEN: 'npm_x' } },
          ],
          network: { mode: 'none', cidrAllowlist: [], allowedDomains: [] },
          timeoutSeconds: 90.5,
          idleTimeoutSeconds: 30,
          bucketMount: { bucket: 'snapshots', keyPrefix: ACCOUNT, readOnly: true },
        }),
      );

      expect(modal.images.fromRegistry).toHaveBeenCalledWith('python:3.12-slim');
      expect(registryImage.dockerfileCommands).not.toHaveBeenCalled();
      expect(registryImage.build).toHaveBeenCalledWith(app);
      expect(base.dockerfileCommands).toHaveBeenCalledWith(['RUN pip install requests']);
      expect(builtOne.dockerfileCommands).toHaveBeenCalledWith(['ENV MODE=test']);
      expect(progress).toEqual([
        { phase: 'building', step: 1, steps: 3, detail: 'image python:3.12-slim' },
        { phase: 'building', step: 2, steps: 3, detail: 'RUN pip install requests' },
        { phase: 'building', step: 3, steps: 3, detail: 'ENV MODE=test' },
        { phase: 'starting' },
      ]);
      expect(modal.volumes.fromName).toHaveBeenCalledWith(`${ACCOUNT}-data`, { createIfMissing: true });
      expect(modal.secrets.fromName.mock.calls).toEqual([['github'], ['npm'], ['s3-bucket']]);
      expect(modal.cloudBucketMounts.create).toHaveBeenCalledWith('snapshots', {
        secret: s3,
        readOnly: true,
        keyPrefix: `${ACCOUNT}/`,
        bucketEndpointUrl: 'https://s3.eu-west-1.amazonaws.com',
      });
      expect(modal.sandboxes.create).toHaveBeenCalledWith(app, builtTwo, {
        workdir: '/data/src',
        env: { A: '1' },
        volumes: { '/data': dataVolume },
        timeoutMs: 91_000,
        // The service's sweep ends it idle after a final snapshot; Modal's idle timeout is the backstop, a minute later.
        idleTimeoutMs: 90_000,
        tags: { account_id: ACCOUNT, sandbox_id: 'sb-1' },
        secrets: [github, npm],
        cloudBucketMounts: { '/mnt/s3': bucket },
        blockNetwork: true,
      });
    });

    describe('network', () => {
      const network = (mode: 'none' | 'internet' | 'allowlist', cidrAllowlist: string[] = [], allowedDomains: string[] = []) => ({ network: { mode, cidrAllowlist, allowedDomains } });

      it.each<[string, ReturnType<typeof network>, Record<string, unknown>]>([
        ['none blocks the network', network('none'), { blockNetwork: true }],
        ['internet is Modal’s default', network('internet'), {}],
        ['allowlist passes its CIDRs as outboundCidrAllowlist', network('allowlist', ['203.0.113.0/24', '2001:db8::/32']), { outboundCidrAllowlist: ['203.0.113.0/24', '2001:db8::/32'] }],
        ['an allowlist without CIDRs allows no outbound address', network('allowlist'), { outboundCidrAllowlist: [] }],
      ])('%s', async (_label, overrides, expected) => {
        await createdSandbox(overrides);
        const params = modal.sandboxes.create.mock.calls[0][2]!;
        expect({ blockNetwork: params.blockNetwork, outboundCidrAllowlist: params.outboundCidrAllowlist, outboundDomainAllowlist: params.outboundDomainAllowlist }).toEqual({
          blockNetwork: undefined,
          outboundCidrAllowlist: undefined,
          outboundDomainAllowlist: undefined,
          ...expected,
        });
        expect(params).not.toHaveProperty('cidrAllowlist');
      });

      it('refuses allowed_domains with a 422-kind error naming the field, before calling Modal at all', async () => {
        const refused = provider.create(spec(network('allowlist', ['203.0.113.0/24'], ['registry.npmjs.org'])));

        await expect(refused).rejects.toBeInstanceOf(UnsupportedNetworkPolicyError);
        await expect(refused).rejects.toMatchObject({ kind: 'unprocessable', message: expect.stringMatching(/^allowed_domains: /), details: { step: 'sandbox', field: 'allowed_domains' } });
        expect(modal.apps.fromName).not.toHaveBeenCalled();
        expect(modal.sandboxes.create).not.toHaveBeenCalled();
      });

      it('checks a policy without creating anything', () => {
        expect(() => provider.assertNetworkSupported(network('allowlist', ['203.0.113.0/24']).network)).not.toThrow();
        expect(() => provider.assertNetworkSupported(network('allowlist', [], ['*.example.com']).network)).toThrow(UnsupportedNetworkPolicyError);
      });
    });

    it('looks the account app up once and reuses it', async () => {
      await createdSandbox();
      const second = fakeSandbox('sb-modal-2');
      const registryImage = fakeImage('registry');
      const defaultImage = fakeImage('default');
      modal.images.fromRegistry.mockReturnValueOnce(registryImage);
      registryImage.dockerfileCommands.mockReturnValueOnce(defaultImage);
      defaultImage.build.mockResolvedValueOnce(fakeImage('built'));
      modal.volumes.fromName.mockResolvedValueOnce(volume);
      modal.sandboxes.create.mockResolvedValueOnce(second);

      await provider.create(spec({ sandboxId: 'sb-2' }));
      await provider.ensureApp(ACCOUNT);

      expect(modal.apps.fromName).toHaveBeenCalledTimes(1);
    });

    it('reports a failing Dockerfile step with its index, instruction and exit code', async () => {
      const registryImage = fakeImage('registry');
      const base = fakeImage('base');
      const step = fakeImage('step');
      modal.apps.fromName.mockResolvedValueOnce(app);
      modal.images.fromRegistry.mockReturnValueOnce(registryImage);
      registryImage.build.mockResolvedValueOnce(base);
      base.dockerfileCommands.mockReturnValueOnce(step);
      step.build.mockRejectedValueOnce(new Error("Image build for im-1 failed with the exception:\nThe command '/bin/sh -c false' returned a non-zero code: 7"));

      const failure = provider.create(spec({ imageBase: 'alpine:3.20', dockerfileCommands: ['RUN false'] }));

      await expect(failure).rejects.toBeInstanceOf(ImageStepFailedError);
      await expect(failure).rejects.toMatchObject({ stepIndex: 0, instruction: 'RUN false', exitCode: 7, outputTail: expect.stringContaining('non-zero code: 7') });
      expect(modal.sandboxes.create).not.toHaveBeenCalled();
    });

    it('refuses a base image Modal cannot build', async () => {
      const registryImage = fakeImage('registry');
      modal.apps.fromName.mockResolvedValueOnce(app);
      modal.images.fromRegistry.mockReturnValueOnce(registryImage);
      registryImage.build.mockRejectedValueOnce(new Error('Image build for im-2 failed with the exception:\nmanifest unknown'));

      await expect(provider.create(spec({ imageBase: 'nope/missing:1' }))).rejects.toBeInstanceOf(UnsupportedImageError);
    });

    it.each([
      ['app', () => modal.apps.fromName.mockRejectedValueOnce(new NotFoundError('no such environment')), ProviderNotFoundError],
      ['volume', () => {
        expectVolumeStep();
        modal.volumes.fromName.mockRejectedValueOnce(new InvalidError('invalid volume name'));
      }, ProviderInvalidError],
      ['sandbox', () => {
        expectVolumeStep();
        modal.volumes.fromName.mockResolvedValueOnce(volume);
        modal.sandboxes.create.mockRejectedValueOnce(new ResourceExhaustedError('sandbox quota reached'));
      }, ProviderExhaustedError],
    ])('names the %s step when it fails', async (step, arrange, expected) => {
      arrange();
      const failure = provider.create(spec());
      await expect(failure).rejects.toBeInstanceOf(expected);
      await expect(failure).rejects.toThrow(new RegExp(`^${step}: `));
    });

    function expectVolumeStep(): void {
      const registryImage = fakeImage('registry');
      const defaultImage = fakeImage('default');
      modal.apps.fromName.mockResolvedValueOnce(app);
      modal.images.fromRegistry.mockReturnValueOnce(registryImage);
      registryImage.dockerfileCommands.mockReturnValueOnce(defaultImage);
      defaultImage.build.mockResolvedValueOnce(fakeImage('built'));
    }

    it('refuses a secret that is neither a Modal Secret nor in SECRETS_FILE with a 400 naming it', async () => {
      modal.secrets.fromName.mockRejectedValueOnce(new NotFoundError("Secret 'github' not found"));

      const refused = provider.assertSecretsExist([{ name: 'github' }]);
      await expect(refused).rejects.toBeInstanceOf(SecretNotFoundError);
      await expect(refused).rejects.toThrow('secrets: no secret named "github" exists (neither a Modal Secret nor in SECRETS_FILE)');
    });

    it('uses a Modal Secret that SECRETS_FILE does not define, and SECRETS_FILE values for a name Modal does not know', async () => {
      const github = new Secret('st-1', 'github');
      const fromFile = new Secret('st-2');
      modal.secrets.fromName.mockResolvedValueOnce(github).mockRejectedValueOnce(new NotFoundError("Secret 'npm' not found"));
      modal.secrets.fromObject.mockResolvedValueOnce(fromFile);
      expectVolumeStep();
      modal.volumes.fromName.mockResolvedValueOnce(volume);
      const sandbox = fakeSandbox('sb-modal-1');
      modal.sandboxes.create.mockResolvedValueOnce(sandbox);

      await provider.create(spec({ secrets: [{ name: 'github' }, { name: 'npm', values: { NPM_TOKEN: 'npm-value' } }] }));

      expect(modal.secrets.fromObject).toHaveBeenCalledWith({ NPM_TOKEN: 'npm-value' });
      expect(modal.sandboxes.create.mock.calls[0][2].secrets).toEqual([github, fromFile]);
    });

    it('names the secret step when Modal fails otherwise', async () => {
      modal.secrets.fromName.mockRejectedValueOnce(new ResourceExhaustedError('rate limited'));
      await expect(provider.assertSecretsExist([{ name: 'github', values: { TOKEN: 'x' } }])).rejects.toThrow(/^secret: rate limited/);
    });

    it('looks the volume up once for ensureVolume and the creation that follows', async () => {
      await provider.ensureVolume(ACCOUNT, 'default').catch(() => undefined);
      const sandbox = fakeSandbox('sb-modal-1');
      expectDefaultCreation(sandbox);
      await provider.ensureVolume(ACCOUNT, 'default');
      await provider.create(spec());
      expect(modal.volumes.fromName).toHaveBeenCalledTimes(2);
    });

    it('gives up on a call that never answers after MODAL_CALL_TIMEOUT_SECONDS', async () => {
      jest.useFakeTimers();
      modal.apps.fromName.mockReturnValueOnce(never());
      const failure = provider.create(spec());
      const rejected = expect(failure).rejects.toThrow('app: app app-acc-1 did not finish within 5s');
      await jest.advanceTimersByTimeAsync(5000);
      await rejected;
      await expect(failure).rejects.toBeInstanceOf(ProviderTimeoutError);
    });

    it('asks again for the app after a failed lookup', async () => {
      modal.apps.fromName.mockRejectedValueOnce(new ResourceExhaustedError('rate limited')).mockResolvedValueOnce(app);
      await expect(provider.ensureApp(ACCOUNT)).rejects.toBeInstanceOf(ProviderExhaustedError);
      await expect(provider.ensureApp(ACCOUNT)).resolves.toBeUndefined();
    });
  });

  it('namespaces Modal volume names per account', () => {
    expect(modalVolumeName('acc-9', 'default')).toBe('volume-acc-9');
    expect(modalVolumeName('acc-9', 'data')).toBe('acc-9-data');
  });

  it('creates the account volume on demand', async () => {
    modal.volumes.fromName.mockResolvedValueOnce(volume);
    await provider.ensureVolume(ACCOUNT, 'default');
    expect(modal.volumes.fromName).toHaveBeenCalledWith(`volume-${ACCOUNT}`, { createIfMissing: true });
  });

  describe('exec', () => {
    it('runs the argv in binary mode with the sandbox workdir, env and timeout', async () => {
      const sandbox = await createdSandbox();
      const started = fakeProcess({ stdout: [Buffer.from('hi\n')], stderr: [Buffer.from('warn\n')], exitCode: 3 });
      sandbox.exec.mockResolvedValueOnce(started);

      const process = await provider.exec('sb-modal-1', { argv: ['echo', 'hi'], env: { X: '1' }, timeoutSeconds: 30 });

      expect({ closed: started.stdin.state.closed, written: started.stdin.written }).toEqual({ closed: true, written: [] });
      expect(sandbox.exec).toHaveBeenCalledWith(['echo', 'hi'], {
        mode: 'binary',
        workdir: '/workspace',
        env: { X: '1', [EXEC_MARKER_ENV]: expect.any(String) },
        timeoutMs: 30_000,
      });
      expect(Buffer.concat(await readAll(process.stdout)).toString()).toBe('hi\n');
      expect(Buffer.concat(await readAll(process.stderr)).toString()).toBe('warn\n');
      await expect(process.wait()).resolves.toEqual({ exitCode: 3, timedOut: false });
    });

    it('passes model credentials only to that exec, through secrets.fromObject', async () => {
      const sandbox = await createdSandbox();
      const credentials = new Secret('', undefined);
      modal.secrets.fromObject.mockResolvedValueOnce(credentials);
      sandbox.exec.mockResolvedValueOnce(fakeProcess());

      const process = await provider.exec('sb-modal-1', {
        argv: ['claude', '-p', 'hello'],
        secretEnv: { ANTHROPIC_API_KEY: 'sk-ant-secret' },
        workdir: '/workspace/app',
      });
      await readAll(process.stdout);
      await readAll(process.stderr);
      await process.wait();

      expect(modal.secrets.fromObject).toHaveBeenCalledWith({ ANTHROPIC_API_KEY: 'sk-ant-secret' });
      const params = sandbox.exec.mock.calls[0][1];
      expect(params).toEqual({ mode: 'binary', workdir: '/workspace/app', env: { [EXEC_MARKER_ENV]: expect.any(String) }, secrets: [credentials] });
      expect(JSON.stringify(params.env)).not.toContain('sk-ant-secret');
    });

    it('delivers stdout chunks split inside a line and inside a multi-byte character byte for byte', async () => {
      const sandbox = await createdSandbox();
      const text = Buffer.from('{"type":"assistant","text":"héllo wörld 🎉"}\n{"type":"result"}\n');
      const emoji = text.indexOf(Buffer.from('🎉'));
      const chunks = [text.subarray(0, 10), text.subarray(10, emoji + 2), text.subarray(emoji + 2, emoji + 3), text.subarray(emoji + 3)];
      sandbox.exec.mockResolvedValueOnce(fakeProcess({ stdout: chunks }));

      const process = await provider.exec('sb-modal-1', { argv: ['claude'] });
      const received = await readAll(process.stdout);

      expect(received.map((chunk) => Buffer.from(chunk))).toEqual(chunks.map((chunk) => Buffer.from(chunk)));
      expect(Buffer.concat(received).toString('utf8').split('\n')).toEqual(['{"type":"assistant","text":"héllo wörld 🎉"}', '{"type":"result"}', '']);
    });

    it('kills an exec by running the killer for its own marker', async () => {
      const sandbox = await createdSandbox();
      let finish!: (code: number) => void;
      sandbox.exec.mockResolvedValueOnce(fakeProcess({ wait: () => new Promise<number>((resolve) => (finish = resolve)) }));
      const killer = fakeProcess({ wait: async () => (finish(137), 0) });
      sandbox.exec.mockResolvedValueOnce(killer);

      const process = await provider.exec('sb-modal-1', { argv: ['sleep', '1000'] });
      const marker = sandbox.exec.mock.calls[0][1].env?.[EXEC_MARKER_ENV] as string;
      const exit = process.wait();
      await process.kill();

      expect(sandbox.exec).toHaveBeenLastCalledWith(killByMarkerArgv(marker), { mode: 'binary' });
      await Promise.all([readAll(process.stdout), readAll(process.stderr)]);
      await expect(exit).resolves.toEqual({ exitCode: 137, timedOut: false });
    });

    it('refuses a sandbox this instance does not know (not created here nor re-attached)', async () => {
      await expect(provider.exec('sb-unknown', { argv: ['true'] })).rejects.toBeInstanceOf(SandboxGoneError);
    });

    it('reports a sandbox that has ended when Modal no longer accepts execs in it', async () => {
      const sandbox = await createdSandbox();
      sandbox.exec.mockRejectedValueOnce(new NotFoundError('Sandbox sb-modal-1 not found'));
      modal.cpClient.sandboxWaitV2.mockResolvedValueOnce({ result: { status: 4, exitcode: 0 } });
      sandbox.detach.mockReturnValueOnce(undefined);

      await expect(provider.exec('sb-modal-1', { argv: ['true'] })).rejects.toBeInstanceOf(SandboxGoneError);
      expect(() => provider.volume(ACCOUNT, 'default', 'sb-modal-1')).toThrow(SandboxGoneError);
    });

    it('names the exec step when Modal refuses to start it', async () => {
      const sandbox = await createdSandbox();
      sandbox.exec.mockRejectedValueOnce(new InvalidError('workdir must be an absolute path'));
      await expect(provider.exec('sb-modal-1', { argv: ['true'], workdir: 'rel' })).rejects.toThrow(/^exec: workdir must be an absolute path/);
    });
  });

  describe('status', () => {
    it.each([
      ['no result', undefined, { status: 'running' }],
      ['TIMEOUT', { status: 4, exitcode: 0 }, { status: 'terminated', exitReason: 'timeout', exitCode: 124 }],
      ['IDLE_TIMEOUT', { status: 7, exitcode: 0 }, { status: 'terminated', exitReason: 'idle_timeout' }],
      ['TERMINATED', { status: 3, exitcode: 0 }, { status: 'terminated', exitReason: 'terminated', exitCode: 137 }],
      ['SUCCESS', { status: 1, exitcode: 0 }, { status: 'terminated', exitReason: 'exited', exitCode: 0 }],
      ['FAILURE exit 2', { status: 2, exitcode: 2 }, { status: 'terminated', exitReason: 'exited', exitCode: 2 }],
      ['MEMORY_MANAGER_EVICTION', { status: 8, exitcode: 0 }, { status: 'terminated', exitReason: 'evicted' }],
      ['INIT_FAILURE', { status: 5, exitcode: 0 }, { status: 'error', exitReason: 'start_failed' }],
    ])('maps the control plane result %s', async (_name, result, state) => {
      await createdSandbox();
      const sandbox = fakeSandbox('unused');
      modal.cpClient.sandboxWaitV2.mockResolvedValueOnce({ result });
      if (result) sandbox.detach.mockReturnValueOnce(undefined);

      await expect(provider.status('sb-modal-1')).resolves.toEqual(state);
      expect(modal.cpClient.sandboxWaitV2).toHaveBeenCalledWith({ sandboxId: 'sb-modal-1', timeout: 0 });
    });

    it('asks a V1 sandbox with the V1 call, as the SDK does, and reports an unknown one as terminated', async () => {
      const v1 = 'sb-0123456789abcdefghijKL';
      modal.cpClient.sandboxWait.mockResolvedValueOnce({ result: undefined });
      modal.cpClient.sandboxWaitV2.mockRejectedValueOnce(new NotFoundError('Sandbox not found'));

      await expect(provider.status(v1)).resolves.toEqual({ status: 'running' });
      await expect(provider.status('sb-gone')).resolves.toEqual({ status: 'terminated', exitReason: 'not_found' });
      expect(modal.cpClient.sandboxWait).toHaveBeenCalledWith({ sandboxId: v1, timeout: 0 });
    });
  });

  describe('terminate', () => {
    it('terminates then detaches, and a second call is a no-op', async () => {
      const sandbox = await createdSandbox();
      const order: string[] = [];
      sandbox.terminate.mockImplementationOnce(async () => void order.push('terminate'));
      sandbox.detach.mockImplementationOnce(() => void order.push('detach'));
      modal.sandboxes.fromId.mockRejectedValueOnce(new NotFoundError('Sandbox not found'));

      await provider.terminate('sb-modal-1');
      await provider.terminate('sb-modal-1');

      expect(order).toEqual(['terminate', 'detach']);
      expect(modal.sandboxes.fromId).toHaveBeenCalledWith('sb-modal-1');
      await expect(provider.exec('sb-modal-1', { argv: ['true'] })).rejects.toBeInstanceOf(SandboxGoneError);
    });
  });

  describe('reattach and reconcile', () => {
    it('re-attaches to a running sandbox by id, after which exec and files work again', async () => {
      const sandbox = fakeSandbox('sb-modal-7');
      modal.cpClient.sandboxWaitV2.mockResolvedValueOnce({});
      modal.sandboxes.fromId.mockResolvedValueOnce(sandbox);
      sandbox.exec.mockResolvedValueOnce(fakeProcess());

      await expect(provider.reattach('sb-modal-7', spec())).resolves.toEqual({ status: 'running' });
      await provider.exec('sb-modal-7', { argv: ['true'] });

      expect(modal.sandboxes.fromId).toHaveBeenCalledWith('sb-modal-7');
      expect(sandbox.exec.mock.calls[0][1].workdir).toBe('/workspace');
      expect(provider.volume(ACCOUNT, 'default', 'sb-modal-7')).toBeInstanceOf(ModalVolumeAccess);
    });

    it('reports how a sandbox ended while nobody watched (its timeout, its idle timeout), and an unknown one as not found', async () => {
      modal.cpClient.sandboxWaitV2
        .mockResolvedValueOnce({ result: { status: 4, exitcode: 0 } })
        .mockResolvedValueOnce({ result: { status: 7, exitcode: 0 } })
        .mockRejectedValueOnce(new NotFoundError('Sandbox not found'));

      await expect(provider.reattach('sb-modal-8', spec())).resolves.toEqual({ status: 'terminated', exitReason: 'timeout', exitCode: 124 });
      await expect(provider.reattach('sb-modal-9', spec())).resolves.toEqual({ status: 'terminated', exitReason: 'idle_timeout' });
      await expect(provider.reattach('sb-modal-10', spec())).resolves.toEqual({ status: 'terminated', exitReason: 'not_found' });
      expect(modal.sandboxes.fromId).not.toHaveBeenCalled();
    });

    it('retries a transient failure and throws one that persists, never answering that the sandbox ended', async () => {
      jest.useFakeTimers();
      const unavailable = () => Object.assign(new Error('UNAVAILABLE: connection refused'), { name: 'ClientError', code: 14 });
      const sandbox = fakeSandbox('sb-modal-11');
      modal.cpClient.sandboxWaitV2.mockRejectedValueOnce(unavailable()).mockResolvedValueOnce({});
      modal.sandboxes.fromId.mockResolvedValueOnce(sandbox);
      const recovered = provider.reattach('sb-modal-11', spec());
      await jest.advanceTimersByTimeAsync(500);
      await expect(recovered).resolves.toEqual({ status: 'running' });

      modal.cpClient.sandboxWaitV2.mockImplementation(() => Promise.reject(unavailable()));
      const failed = provider.reattach('sb-modal-12', spec());
      const rejected = expect(failed).rejects.toBeInstanceOf(ProviderUnavailableError);
      await jest.advanceTimersByTimeAsync(10_000);
      await rejected;
      expect(modal.cpClient.sandboxWaitV2.mock.calls.filter(([request]) => request.sandboxId === 'sb-modal-12')).toHaveLength(4);
    });

    it("lists the account's running sandboxes within its app, by tag", async () => {
      modal.apps.fromName.mockResolvedValueOnce(app);
      modal.sandboxes.experimentalList.mockReturnValueOnce(
        (async function* () {
          yield fakeSandbox('sb-a');
          yield fakeSandbox('sb-b');
        })(),
      );

      await expect(provider.runningSandboxIds(ACCOUNT)).resolves.toEqual(['sb-a', 'sb-b']);
      expect(modal.apps.fromName).toHaveBeenCalledWith(`app-${ACCOUNT}`);
      expect(modal.sandboxes.experimentalList).toHaveBeenCalledWith({ appId: 'ap-1', tags: { account_id: ACCOUNT } });
    });

    it('finds no sandboxes, without creating the app, for an account whose app does not exist', async () => {
      modal.apps.fromName.mockRejectedValueOnce(new NotFoundError("App 'app-acc-1' not found"));
      await expect(provider.runningSandboxIds(ACCOUNT)).resolves.toEqual([]);
    });
  });

  describe('volume', () => {
    it('needs a running sandbox that mounts the volume', async () => {
      await createdSandbox();
      expect(() => provider.volume(ACCOUNT, 'default')).toThrow(ProviderConflictError);
      expect(() => provider.volume(ACCOUNT, 'default', 'sb-unknown')).toThrow(SandboxGoneError);
      expect(() => provider.volume(ACCOUNT, 'other', 'sb-modal-1')).toThrow(/does not mount volume other/);
      expect(() => provider.volume('acc-2', 'default', 'sb-modal-1')).toThrow(ProviderConflictError);
      expect(provider.volume(ACCOUNT, 'default', 'sb-modal-1')).toBeInstanceOf(ModalVolumeAccess);
    });
  });

  describe('configuration', () => {
    it('refuses to start without credentials, naming both variables', () => {
      const bare = AppConfig.fromEnvironment({ SANDBOX_PROVIDER: 'modal' });
      expect(() => assertModalConfigured(bare)).toThrow(/MODAL_TOKEN_ID and MODAL_TOKEN_SECRET/);
      expect(() => assertModalConfigured(config())).not.toThrow();
      expect(new ModalSandboxProvider(bare).isConfigured()).toBe(false);
      expect(new ModalSandboxProvider(config()).isConfigured()).toBe(true);
    });

    it('answers 503 without internals when credentials are missing', async () => {
      const error = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
      const unconfigured = new ModalSandboxProvider(AppConfig.fromEnvironment({}));
      await expect(unconfigured.ensureApp(ACCOUNT)).rejects.toBeInstanceOf(ProviderUnavailableError);
      expect(error).toHaveBeenCalledWith(expect.stringContaining('MODAL_TOKEN_ID'));
    });

    it('answers 503 and logs a configuration error without the token when Modal rejects the credentials', async () => {
      const error = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
      modal.apps.fromName.mockRejectedValueOnce(Object.assign(new Error('/modal.client.ModalClient/AppGetOrCreate UNAUTHENTICATED: bad token'), { name: 'ClientError', code: 16, details: 'bad token' }));

      const failure = provider.ensureApp(ACCOUNT);

      await expect(failure).rejects.toBeInstanceOf(ProviderUnavailableError);
      await expect(failure).rejects.toThrow(/^app: the sandbox engine is not available$/);
      expect(error.mock.calls.flat().join(' ')).not.toMatch(/ak-test|as-test/);
    });
  });
});
