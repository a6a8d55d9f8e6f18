import { AppConfig } from '../../config/app-config';
import { ClaudeCliProvider, ClaudeInvocationOptions } from './claude.provider';

function providerWith(env: Record<string, string>): ClaudeCliProvider {
  return new ClaudeCliProvider(AppConfig.fromEnvironment(env));
}

const base: ClaudeInvocationOptions = { prompt: 'hello', runsAsRoot: false, configDir: '/workspace/.claude' };

describe('ClaudeCliProvider', () => {
  describe('isConfigured', () => {
    it.each([
      ['an API key', { ANTHROPIC_API_KEY: 'sk-ant-x' }],
      ['an auth token', { ANTHROPIC_AUTH_TOKEN: 'tok' }],
      ['Bedrock with a bearer token', { CLAUDE_CODE_USE_BEDROCK: '1', AWS_REGION: 'us-east-1', AWS_BEARER_TOKEN_BEDROCK: 'b' }],
      ['Bedrock with AWS keys', { CLAUDE_CODE_USE_BEDROCK: 'true', AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 's' }],
      ['Vertex', { CLAUDE_CODE_USE_VERTEX: '1', CLOUD_ML_REGION: 'us-east5', ANTHROPIC_VERTEX_PROJECT_ID: 'p' }],
    ])('is true with %s', (_name, env) => {
      expect(providerWith(env).isConfigured()).toBe(true);
    });

    it.each([
      ['nothing', {}],
      ['only a base URL', { ANTHROPIC_BASE_URL: 'http://127.0.0.1:1' }],
      ['Bedrock switched off', { CLAUDE_CODE_USE_BEDROCK: '0', AWS_REGION: 'us-east-1', AWS_BEARER_TOKEN_BEDROCK: 'b' }],
      ['Bedrock without a region', { CLAUDE_CODE_USE_BEDROCK: '1', AWS_BEARER_TOKEN_BEDROCK: 'b' }],
      ['Bedrock without credentials', { CLAUDE_CODE_USE_BEDROCK: '1', AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'a' }],
      ['Vertex without a project', { CLAUDE_CODE_USE_VERTEX: '1', CLOUD_ML_REGION: 'us-east5' }],
    ])('is false with %s', (_name, env) => {
      expect(providerWith(env).isConfigured()).toBe(false);
    });
  });

  it('names the variables to set, without any value', () => {
    const message = providerWith({ ANTHROPIC_BASE_URL: 'http://secret-host:1' }).missingCredentialsMessage();

    for (const variable of ['ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'CLAUDE_CODE_USE_BEDROCK', 'CLAUDE_CODE_USE_VERTEX']) {
      expect(message).toContain(variable);
    }
    expect(message).not.toContain('secret-host');
  });

  describe('buildInvocation', () => {
    it('runs print mode with stream-json, skipping permissions, with the prompt as the last argument after --', () => {
      const { argv } = providerWith({}).buildInvocation(base);

      expect(argv).toEqual(['claude', '-p', '--output-format=stream-json', '--verbose', '--dangerously-skip-permissions', '--', 'hello']);
    });

    it('keeps a prompt with dashes, quotes, newlines and unicode as one untouched argument', () => {
      const prompt = `--resume x\n"quoted" 'single' $(rm -rf /) 🚀`;

      const { argv } = providerWith({}).buildInvocation({ ...base, prompt });

      expect(argv.slice(-2)).toEqual(['--', prompt]);
    });

    it('maps every option to its flag', () => {
      const { argv } = providerWith({}).buildInvocation({
        ...base,
        model: 'claude-x',
        maxTurns: 7,
        allowedTools: ['Bash(git *)', 'Edit'],
        disallowedTools: ['WebFetch'],
        appendSystemPrompt: '-be brief\nalways',
        includePartialMessages: true,
        resumeSessionId: '0b5e6f3c-1d2e-4f60-8a9b-0c1d2e3f4a5b',
      });

      expect(argv).toEqual([
        'claude',
        '-p',
        '--output-format=stream-json',
        '--verbose',
        '--model=claude-x',
        '--max-turns=7',
        '--dangerously-skip-permissions',
        '--allowedTools=Bash(git *),Edit',
        '--disallowedTools=WebFetch',
        '--append-system-prompt=-be brief\nalways',
        '--include-partial-messages',
        '--resume=0b5e6f3c-1d2e-4f60-8a9b-0c1d2e3f4a5b',
        '--',
        'hello',
      ]);
    });

    it('uses the configured model unless the run names one', () => {
      const provider = providerWith({ ANTHROPIC_MODEL: 'claude-configured' });

      expect(provider.buildInvocation(base).argv).toContain('--model=claude-configured');
      expect(provider.buildInvocation({ ...base, model: 'claude-chosen' }).argv).toContain('--model=claude-chosen');
    });

    it('leaves permission prompts on when asked, and then does not claim a sandbox', () => {
      const invocation = providerWith({}).buildInvocation({ ...base, skipPermissions: false, runsAsRoot: true });

      expect(invocation.argv).not.toContain('--dangerously-skip-permissions');
      expect(invocation.env.IS_SANDBOX).toBeUndefined();
    });

    it('sets IS_SANDBOX only for root, which the CLI requires to skip permissions', () => {
      const provider = providerWith({});

      expect(provider.buildInvocation({ ...base, runsAsRoot: true }).env.IS_SANDBOX).toBe('1');
      expect(provider.buildInvocation(base).env.IS_SANDBOX).toBeUndefined();
    });

    it('puts the state directory and headless settings in env and the credentials only in secretEnv', () => {
      const credentials = { ANTHROPIC_API_KEY: 'sk-ant-secret', ANTHROPIC_BASE_URL: 'http://127.0.0.1:9', AWS_REGION: 'eu-west-1' };

      const { env, secretEnv } = providerWith(credentials).buildInvocation(base);

      expect(env).toEqual({
        CLAUDE_CONFIG_DIR: '/workspace/.claude',
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
        DISABLE_AUTOUPDATER: '1',
      });
      expect(secretEnv).toEqual(credentials);
    });

    it('gives the process only the gateway URL and the run token when it goes through the model gateway', () => {
      const credentials = { ANTHROPIC_API_KEY: 'sk-ant-secret', ANTHROPIC_AUTH_TOKEN: 'oauth-secret', ANTHROPIC_BASE_URL: 'http://upstream.test' };

      const { env, secretEnv } = providerWith(credentials).buildInvocation({ ...base, modelGateway: { url: 'http://127.0.0.1:4100', token: 'mgw_run' } });

      expect(secretEnv).toEqual({ ANTHROPIC_BASE_URL: 'http://127.0.0.1:4100', ANTHROPIC_API_KEY: 'mgw_run' });
      expect(JSON.stringify(env)).not.toMatch(/sk-ant-secret|oauth-secret|upstream\.test/);
    });
  });

  describe('supportsModelGateway', () => {
    it.each([
      [{ ANTHROPIC_API_KEY: 'k' }, true],
      [{ ANTHROPIC_AUTH_TOKEN: 't' }, true],
      [{ CLAUDE_CODE_USE_BEDROCK: '1', AWS_REGION: 'us-east-1', AWS_BEARER_TOKEN_BEDROCK: 'b', ANTHROPIC_API_KEY: 'k' }, false],
      [{ CLAUDE_CODE_USE_VERTEX: '1', CLOUD_ML_REGION: 'us-east5', ANTHROPIC_VERTEX_PROJECT_ID: 'p' }, false],
      [{}, false],
    ])('%j → %s', (credentials, expected) => {
      expect(providerWith(credentials as Record<string, string>).supportsModelGateway()).toBe(expected);
    });
  });
});
