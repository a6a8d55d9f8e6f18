import { parseDockerfileCommands } from '../dockerfile';
import type { SandboxSpec } from '../sandbox-provider';
import { exitedState, imageDefaultsOf, sandboxDefaults } from './sandbox-environment';

const spec: SandboxSpec = {
  sandboxId: 's1',
  accountId: 'a1',
  dockerfileCommands: [],
  volumeName: 'work',
  volumeMountPath: '/workspace',
  workdir: '/workspace',
  env: { MODE: 'sandbox', SHARED: 'from-env' },
  secrets: [{ name: 'tokens', values: { TOKEN: 't', SHARED: 'from-secret' } }],
  network: { mode: 'internet', cidrAllowlist: [], allowedDomains: [] },
  timeoutSeconds: 60,
};

describe('imageDefaultsOf', () => {
  it('applies ENV over the defaults, expanding earlier values, and resolves WORKDIR against the previous one', () => {
    const defaults = imageDefaultsOf(parseDockerfileCommands(['ENV TOOL=/opt/tool PATH=/opt/tool/bin:$PATH', 'WORKDIR /srv', 'WORKDIR app']));

    expect(defaults.env).toMatchObject({ TOOL: '/opt/tool', HOME: '/root', LANG: 'C.UTF-8' });
    expect(defaults.env!.PATH).toMatch(/^\/opt\/tool\/bin:\/opt\/claude-code\/bin:/);
    expect(defaults.workdir).toBe('/srv/app');
  });

  it('starts from the image ENV and WORKDIR: its PATH after the Claude CLI, a relative WORKDIR line against its workdir', () => {
    const defaults = imageDefaultsOf(parseDockerfileCommands(['ENV GREETING="$IMAGE_VAR there"', 'WORKDIR app']), { env: { PATH: '/usr/bin:/bin', IMAGE_VAR: 'hi' }, workdir: '/srv' });

    expect(defaults.env).toMatchObject({ PATH: '/opt/claude-code/bin:/usr/bin:/bin', IMAGE_VAR: 'hi', GREETING: 'hi there', HOME: '/root' });
    expect(defaults.workdir).toBe('/srv/app');
  });

  it('leaves the workdir to the sandbox when no WORKDIR line sets one', () => {
    expect(imageDefaultsOf(parseDockerfileCommands(['RUN true']))).not.toHaveProperty('workdir');
  });
});

describe('sandboxDefaults', () => {
  it('layers the image environment, then the sandbox env, then secret values', () => {
    const defaults = sandboxDefaults(spec, { env: { MODE: 'image', PATH: '/bin' } });

    expect(defaults).toEqual({ env: { MODE: 'sandbox', PATH: '/bin', SHARED: 'from-secret', TOKEN: 't' }, workdir: '/workspace' });
  });

  it('takes the image workdir over the spec workdir', () => {
    expect(sandboxDefaults(spec, { workdir: '/srv/app' }).workdir).toBe('/srv/app');
  });
});

describe('exitedState', () => {
  it('reports a sandbox whose init ended by itself as terminated, with the exit code', () => {
    expect(exitedState(137)).toEqual({ status: 'terminated', exitReason: 'exited', exitCode: 137 });
  });
});
