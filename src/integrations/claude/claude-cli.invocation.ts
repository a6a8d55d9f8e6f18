import type { AppConfig } from '../../config/app-config';
import type { ClaudeRunOptions } from './claude.agent';

/** A run's options, plus what only the CLI's invocation needs. */
export interface ClaudeInvocationOptions extends Omit<ClaudeRunOptions, 'modelGatewayToken'> {
  /** The CLI refuses to skip permissions as root unless told it runs in a sandbox. */
  runsAsRoot: boolean;
  /** Claude's state directory (settings, conversation transcripts); on the sandbox's volume. */
  configDir: string;
  /**
   * The model gateway and the run's token: the process then gets only these, never the
   * operator's credentials. Without it, the configured credentials are injected as they are.
   */
  modelGateway?: { url: string; token: string };
}

/** A process to start inside a sandbox: argv (no shell) plus plain and secret environment. */
export interface ClaudeInvocation {
  argv: string[];
  env: Record<string, string>;
  /** Model credentials: only for this process, never logged. */
  secretEnv: Record<string, string>;
}

/** Settings that let the CLI run headless, with no TTY, no updates and no traffic besides the model API. */
const HEADLESS_ENV = {
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
  DISABLE_AUTOUPDATER: '1',
};

/**
 * The Claude Code CLI (`claude` on the sandbox's PATH) in print mode with stream-json output.
 * Inside a sandbox nobody can answer a permission prompt, so tools always run unasked.
 * Every option takes the `--name=value` form and the prompt follows `--`, so no value (a prompt
 * starting with `-`, a model name, a tool list) can be read as another option.
 */
export function claudeCliInvocation(config: AppConfig, options: ClaudeInvocationOptions): ClaudeInvocation {
  const env: Record<string, string> = { ...HEADLESS_ENV, CLAUDE_CONFIG_DIR: options.configDir };
  if (options.runsAsRoot) env.IS_SANDBOX = '1';
  return {
    argv: ['claude', '-p', '--output-format=stream-json', '--verbose', ...optionFlags(options, config.claude.model), '--', options.prompt],
    env,
    secretEnv: options.modelGateway ? gatewayEnv(options.modelGateway) : { ...config.claude.credentials },
  };
}

function optionFlags(options: ClaudeInvocationOptions, configuredModel: string | undefined): string[] {
  const model = options.model ?? configuredModel;
  const flags: string[] = [];
  if (model) flags.push(`--model=${model}`);
  if (options.maxTurns !== undefined) flags.push(`--max-turns=${options.maxTurns}`);
  flags.push('--dangerously-skip-permissions');
  if (options.allowedTools?.length) flags.push(`--allowedTools=${options.allowedTools.join(',')}`);
  if (options.disallowedTools?.length) flags.push(`--disallowedTools=${options.disallowedTools.join(',')}`);
  if (options.appendSystemPrompt) flags.push(`--append-system-prompt=${options.appendSystemPrompt}`);
  if (options.includePartialMessages) flags.push('--include-partial-messages');
  if (options.resumeSessionId) flags.push(`--resume=${options.resumeSessionId}`);
  return flags;
}

/** The CLI sends ANTHROPIC_API_KEY as `x-api-key` to ANTHROPIC_BASE_URL: the gateway takes the run token there. */
function gatewayEnv(gateway: { url: string; token: string }): Record<string, string> {
  return { ANTHROPIC_BASE_URL: gateway.url, ANTHROPIC_API_KEY: gateway.token };
}
