import { createHash } from 'node:crypto';
import { ImagePullRefusedError, RegistryUnavailableError } from '../sandbox-provider.errors';
import { registryError, RegistryTools, ToolFailure, type ToolRunner } from './registry-tools';

const BINS = { skopeo: '/usr/bin/skopeo', umoci: '/usr/bin/umoci' };
const FILES = { home: '/data/registry-images/home', policy: '/data/registry-images/policy.json' };
const ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: FILES.home, TMPDIR: FILES.home };

/** A runner that answers the expected calls in order and fails the test on any other. */
function strictRunner(expected: Array<{ file: string; args: string[]; result: { stdout?: string } | ToolFailure }>): jest.MockedFunction<ToolRunner> {
  const queue = [...expected];
  return jest.fn<ReturnType<ToolRunner>, Parameters<ToolRunner>>(async (file, args, options) => {
    const next = queue.shift();
    if (!next) throw new Error(`unexpected call: ${file} ${args.join(' ')}`);
    expect({ file, args, env: options.env }).toEqual({ file: next.file, args: next.args, env: ENV });
    if (next.result instanceof ToolFailure) throw next.result;
    return { stdout: Buffer.from(next.result.stdout ?? ''), stderr: '' };
  });
}

const fatal = (message: string) => new ToolFailure(`time="2026-01-01T00:00:00Z" level=fatal msg="${message.replaceAll('"', '\\"')}"\n`, false);

describe('RegistryTools', () => {
  it('resolves a reference to the sha256 of the manifest bytes the registry serves, with the auth file and TLS setting', async () => {
    const manifest = '{"schemaVersion":2}';
    const run = strictRunner([
      {
        file: BINS.skopeo,
        args: ['--policy', FILES.policy, 'inspect', '--raw', '--tls-verify=false', '--authfile', '/etc/auth.json', 'docker://127.0.0.1:5000/a/b:1'],
        result: { stdout: manifest },
      },
    ]);

    const digest = await new RegistryTools(BINS, FILES, run).manifestDigest('127.0.0.1:5000/a/b:1', 'docker://127.0.0.1:5000/a/b:1', { tlsVerify: false, authFile: '/etc/auth.json' });

    expect(digest).toBe(`sha256:${createHash('sha256').update(manifest).digest('hex')}`);
    expect(run).toHaveBeenCalledTimes(1);
  });

  it('copies for the host platform and unpacks with umoci', async () => {
    const run = strictRunner([
      {
        file: BINS.skopeo,
        args: ['--policy', FILES.policy, '--override-os', 'linux', '--override-arch', 'arm64', 'copy', '--quiet', '--src-tls-verify=true', 'docker://x.io/a@sha256:1', 'oci:/t/layout:image'],
        result: {},
      },
      { file: BINS.umoci, args: ['unpack', '--image', '/t/layout:image', '/t/bundle'], result: {} },
    ]);
    const tools = new RegistryTools(BINS, FILES, run);

    await tools.copy('x.io/a', 'docker://x.io/a@sha256:1', 'oci:/t/layout:image', { tlsVerify: true }, { os: 'linux', architecture: 'arm64' });
    await tools.unpack('x.io/a', '/t/layout:image', '/t/bundle');

    expect(run).toHaveBeenCalledTimes(2);
  });

  it('turns a failed inspect into the domain error it stands for', async () => {
    const run = strictRunner([
      { file: BINS.skopeo, args: ['--policy', FILES.policy, 'inspect', '--raw', '--tls-verify=true', 'docker://x.io/a:1'], result: fatal('Error parsing image name "docker://x.io/a:1": reading manifest 1 in x.io/a: manifest unknown: manifest unknown') },
    ]);

    const failure = new RegistryTools(BINS, FILES, run).manifestDigest('x.io/a:1', 'docker://x.io/a:1', { tlsVerify: true });

    await expect(failure).rejects.toBeInstanceOf(ImagePullRefusedError);
    await expect(failure).rejects.toMatchObject({ reason: 'not_found', message: expect.stringMatching(/^image_base: x\.io\/a:1 does not exist in its registry: reading manifest 1 in x\.io\/a: manifest unknown/) });
  });
});

describe('registryError', () => {
  it.each([
    ['reading manifest v9 in 127.0.0.1:5000/a: manifest unknown: manifest unknown', ImagePullRefusedError, 'not_found'],
    ['reading manifest latest in 127.0.0.1:5000/private/busy: unauthorized: authentication required', ImagePullRefusedError, 'unauthorized'],
    ['initializing source docker://x.io/a:1: requested access to the resource is denied', ImagePullRefusedError, 'unauthorized'],
    ['Manifest does not match provided manifest digest sha256:aa', ImagePullRefusedError, 'digest_mismatch'],
    ['choosing an image from manifest list docker://x.io/a:1: no image found in manifest list for architecture amd64, variant "", OS linux', ImagePullRefusedError, 'no_platform'],
    ['pinging container registry 127.0.0.1:1: Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused', RegistryUnavailableError, undefined],
    ['pinging container registry r.lan:5000: Get "https://r.lan:5000/v2/": http: server gave HTTP response to HTTPS client', RegistryUnavailableError, undefined],
    ['pinging container registry nowhere.invalid: Get "https://nowhere.invalid/v2/": dial tcp: lookup nowhere.invalid: no such host', RegistryUnavailableError, undefined],
  ])('%s', (message, type, reason) => {
    const error = registryError('img', fatal(message));

    expect(error).toBeInstanceOf(type);
    expect(error.message).toMatch(/^image_base: /);
    if (reason) expect(error).toMatchObject({ reason });
  });

  it('says plain HTTP registries must be listed, and a timeout is an outage', () => {
    expect(registryError('img', fatal('http: server gave HTTP response to HTTPS client')).message).toContain('REGISTRY_INSECURE');
    expect(registryError('img', new ToolFailure('', true))).toBeInstanceOf(RegistryUnavailableError);
  });

  it('never repeats credentials a URL may carry', () => {
    expect(registryError('img', fatal('Get "https://user:s3cret@r.lan/v2/": dial tcp: connection refused')).message).not.toContain('s3cret');
  });
});
