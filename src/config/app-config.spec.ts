import { AppConfig, generatedInstanceId } from './app-config';
import { ConfigValidationError } from './environment';

describe('INSTANCE_ID', () => {
  it('is taken as given when it is a valid name', () => {
    expect(AppConfig.fromEnvironment({ INSTANCE_ID: 'web-1.eu_west' }).instanceId).toBe('web-1.eu_west');
  });

  it.each(['-leading-dash', 'has space', 'a/b', 'x'.repeat(64)])('refuses %j, naming the variable', (value) => {
    expect(() => AppConfig.fromEnvironment({ INSTANCE_ID: value })).toThrow(ConfigValidationError);
    expect(() => AppConfig.fromEnvironment({ INSTANCE_ID: value })).toThrow(/INSTANCE_ID must be/);
  });

  it('defaults to the host name and a random suffix, different at each start', () => {
    const first = AppConfig.fromEnvironment({}).instanceId;
    const second = AppConfig.fromEnvironment({ INSTANCE_ID: '' }).instanceId;

    expect(first).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]*-[0-9a-f]{6}$/);
    expect(second).not.toBe(first);
  });

  it('makes a valid id of any host name', () => {
    expect(generatedInstanceId('web 1/prod')).toMatch(/^web-1-prod-[0-9a-f]{6}$/);
    expect(generatedInstanceId('--')).toMatch(/^instance-[0-9a-f]{6}$/);
    expect(generatedInstanceId('h'.repeat(200))).toMatch(/^h{48}-[0-9a-f]{6}$/);
  });
});

describe('CLAUDE_BIN_MUSL', () => {
  it('defaults to where scripts/fetch-claude-musl.sh puts the musl build of the pinned CLI', () => {
    const { version } = require('@anthropic-ai/claude-code/package.json') as { version: string };

    expect(AppConfig.fromEnvironment({}).sandbox.claudeBinMusl).toMatch(new RegExp(`/\\.cache/claude-code/claude-code-linux-${process.arch}-musl-${version.replaceAll('.', '\\.')}/claude$`));
  });

  it('is taken as an absolute path when given; empty means the default', () => {
    expect(AppConfig.fromEnvironment({ CLAUDE_BIN_MUSL: 'bin/claude-musl' }).sandbox.claudeBinMusl).toBe(`${process.cwd()}/bin/claude-musl`);
    expect(AppConfig.fromEnvironment({ CLAUDE_BIN_MUSL: '' }).sandbox.claudeBinMusl).toBe(AppConfig.fromEnvironment({}).sandbox.claudeBinMusl);
  });
});

describe('registry image settings', () => {
  it('default to anonymous pulls of missing images, TLS everywhere but loopback', () => {
    expect(AppConfig.fromEnvironment({}).sandbox.registry).toEqual({ authFile: undefined, pullPolicy: 'if-not-present', insecure: [], cacheMaxBytes: undefined });
  });

  it('take an auth file, a pull policy and a list of insecure registries', () => {
    const { registry } = AppConfig.fromEnvironment({ REGISTRY_AUTH_FILE: '/etc/mss/auth.json', IMAGE_PULL_POLICY: 'never', REGISTRY_INSECURE: 'Registry.lan:5000, 10.0.0.5:80' }).sandbox;

    expect(registry).toEqual({ authFile: '/etc/mss/auth.json', pullPolicy: 'never', insecure: ['registry.lan:5000', '10.0.0.5:80'], cacheMaxBytes: undefined });
  });

  it('take IMAGE_CACHE_MAX_GB in GiB (fractions allowed) as a byte cap', () => {
    expect(AppConfig.fromEnvironment({ IMAGE_CACHE_MAX_GB: '1.5' }).sandbox.registry.cacheMaxBytes).toBe(1.5 * 1024 ** 3);
    expect(AppConfig.fromEnvironment({ IMAGE_CACHE_MAX_GB: '0.000001' }).sandbox.registry.cacheMaxBytes).toBe(1073);
  });

  it.each([
    ['IMAGE_PULL_POLICY', 'sometimes'],
    ['IMAGE_CACHE_MAX_GB', 'ten'],
    ['IMAGE_CACHE_MAX_GB', '-1'],
    ['REGISTRY_INSECURE', 'http://registry.lan:5000'],
  ])('refuse %s=%j', (name, value) => {
    expect(() => AppConfig.fromEnvironment({ [name]: value })).toThrow(new RegExp(name));
  });
});
