import { AppConfig } from '../../config/app-config';
import { claudeCliInvocation, ClaudeInvocationOptions } from './claude-cli.invocation';

function invocationWith(env: Record<string, string>, options: ClaudeInvocationOptions) {
  return claudeCliInvocation(AppConfig.fromEnvironment(env), options);
}

const base: ClaudeInvocationOptions = { prompt: 'hello', runsAsRoot: false, configDir: '/workspace/.claude' };

describe('claudeCliInvocation', () => {
  it('runs print mode with stream-json, skipping permissions, with the prompt as the last argument after --', () => {
    const { argv } = invocationWith({}, base);

    expect(argv).toEqual(['claude', '-p', '--output-format=stream-json', '--verbose', '--dangerously-skip-permissions', '--', 'hello']);
  });

  it('keeps a prompt with dashes, quotes, newlines and unicode as one untouched argument', () => {
    const prompt = `--resume x\n"quoted" 'single' $(rm -rf /) 🚀`;

    const { argv } = invocationWith({}, { ...base, prompt });

    expect(argv.slice(-2)).toEqual(['--', prompt]);
  });

  it('maps every option to its flag', () => {
    const { argv } = invocationWith({}, {
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
    const invocation = (options: ClaudeInvocationOptions) => invocationWith({ ANTHROPIC_MODEL: 'claude-configured' }, options);

    expect(invocation(base).argv).toContain('--model=claude-configured');
    expect(invocation({ ...base, model: 'claude-chosen' }).argv).toContain('--model=claude-chosen');
  });


  it('sets IS_SANDBOX only for root, which the CLI requires to skip permissions', () => {
    const invocation = (options: ClaudeInvocationOptions) => invocationWith({}, options);

    expect(invocation({ ...base, runsAsRoot: true }).env.IS_SANDBOX).toBe('1');
    expect(invocation(base).env.IS_SANDBOX).toBeUndefined();
  });

  it('puts the state directory and headless settings in env and the credentials only in secretEnv', () => {
    const credentials = { ANTHROPIC_API_KEY: 'sk-ant-secret', ANTHROPIC_BASE_URL: 'http://127.0.0.1:9', AWS_REGION: 'eu-west-1' };

    const { env, secretEnv } = invocationWith(credentials, base);

    expect(env).toEqual({
      CLAUDE_CONFIG_DIR: '/workspace/.claude',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      DISABLE_AUTOUPDATER: '1',
    });
    expect(secretEnv).toEqual(credentials);
  });

  it('gives the process only the gateway URL and the run token when it goes through the model gateway', () => {
    const credentials = { ANTHROPIC_API_KEY: 'sk-ant-secret', ANTHROPIC_AUTH_TOKEN: 'oauth-secret', ANTHROPIC_BASE_URL: 'http://upstream.test' };

    const { env, secretEnv } = invocationWith(credentials, { ...base, modelGateway: { url: 'http://127.0.0.1:4100', token: 'mgw_run' } });

    expect(secretEnv).toEqual({ ANTHROPIC_BASE_URL: 'http://127.0.0.1:4100', ANTHROPIC_API_KEY: 'mgw_run' });
    expect(JSON.stringify(env)).not.toMatch(/sk-ant-secret|oauth-secret|upstream\.test/);
  });
});
