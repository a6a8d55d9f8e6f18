import { Injectable } from '@nestjs/common';
import { AppConfig } from '../../config/app-config';

export interface ClaudeInvocationOptions {
  prompt: string;
  /** The `session_id` of an earlier run's result; its transcript must be under configDir. */
  resumeSessionId?: string;
  /** Defaults to the configured ANTHROPIC_MODEL, else the CLI's own default. */
  model?: string;
  maxTurns?: number;
  allowedTools?: string[];
  disallowedTools?: string[];
  appendSystemPrompt?: string;
  includePartialMessages?: boolean;
  /** Inside a sandbox nobody can answer a permission prompt, so tools run unasked by default. */
  skipPermissions?: boolean;
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

/** How the Claude Code CLI is invoked; an abstract class so that it can be injected and replaced. */
export abstract class ClaudeProvider {
  /** Whether model credentials are configured at all; runs are refused (503) otherwise. */
  abstract isConfigured(): boolean;
  /** Tells an operator which variables to set; contains no values. */
  abstract missingCredentialsMessage(): string;
  abstract buildInvocation(options: ClaudeInvocationOptions): ClaudeInvocation;
  /**
   * Whether the configured credentials can be used through the model gateway (an Anthropic API key
   * or token); Bedrock and Vertex credentials are still injected into the Claude process.
   */
  abstract supportsModelGateway(): boolean;
}

const MISSING_CREDENTIALS_MESSAGE =
  'Claude is not configured: set ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN; ' +
  'or CLAUDE_CODE_USE_BEDROCK=1 with AWS_REGION and AWS_BEARER_TOKEN_BEDROCK (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); ' +
  'or CLAUDE_CODE_USE_VERTEX=1 with CLOUD_ML_REGION and ANTHROPIC_VERTEX_PROJECT_ID';

/** Settings that let the CLI run headless, with no TTY, no updates and no traffic besides the model API. */
const HEADLESS_ENV = {
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
  DISABLE_AUTOUPDATER: '1',
};

/**
 * The Claude Code CLI (`claude` on the sandbox's PATH) in print mode with stream-json output.
 * Every option takes the `--name=value` form and the prompt follows `--`, so no value (a prompt
 * starting with `-`, a model name, a tool list) can be read as another option.
 */
@Injectable()
export class ClaudeCliProvider extends ClaudeProvider {
  constructor(private readonly config: AppConfig) {
    super();
  }

  isConfigured(): boolean {
    const credentials = this.config.claude.credentials;
    const anthropic = Boolean(credentials.ANTHROPIC_API_KEY || credentials.ANTHROPIC_AUTH_TOKEN);
    const bedrock =
      isEnabled(credentials.CLAUDE_CODE_USE_BEDROCK) &&
      Boolean(credentials.AWS_REGION) &&
      Boolean(credentials.AWS_BEARER_TOKEN_BEDROCK || (credentials.AWS_ACCESS_KEY_ID && credentials.AWS_SECRET_ACCESS_KEY));
    const vertex =
      isEnabled(credentials.CLAUDE_CODE_USE_VERTEX) && Boolean(credentials.CLOUD_ML_REGION && credentials.ANTHROPIC_VERTEX_PROJECT_ID);
    return anthropic || bedrock || vertex;
  }

  missingCredentialsMessage(): string {
    return MISSING_CREDENTIALS_MESSAGE;
  }

  buildInvocation(options: ClaudeInvocationOptions): ClaudeInvocation {
    const skipPermissions = options.skipPermissions ?? true;
    const env: Record<string, string> = { ...HEADLESS_ENV, CLAUDE_CONFIG_DIR: options.configDir };
    if (skipPermissions && options.runsAsRoot) env.IS_SANDBOX = '1';
    return {
      argv: ['claude', '-p', '--output-format=stream-json', '--verbose', ...this.optionFlags(options, skipPermissions), '--', options.prompt],
      env,
      secretEnv: options.modelGateway ? gatewayEnv(options.modelGateway) : { ...this.config.claude.credentials },
    };
  }

  supportsModelGateway(): boolean {
    const credentials = this.config.claude.credentials;
    const cloud = isEnabled(credentials.CLAUDE_CODE_USE_BEDROCK) || isEnabled(credentials.CLAUDE_CODE_USE_VERTEX);
    return !cloud && Boolean(credentials.ANTHROPIC_API_KEY || credentials.ANTHROPIC_AUTH_TOKEN);
  }

  private optionFlags(options: ClaudeInvocationOptions, skipPermissions: boolean): string[] {
    const model = options.model ?? this.config.claude.model;
    const flags: string[] = [];
    if (model) flags.push(`--model=${model}`);
    if (options.maxTurns !== undefined) flags.push(`--max-turns=${options.maxTurns}`);
    if (skipPermissions) flags.push('--dangerously-skip-permissions');
    if (options.allowedTools?.length) flags.push(`--allowedTools=${options.allowedTools.join(',')}`);
    if (options.disallowedTools?.length) flags.push(`--disallowedTools=${options.disallowedTools.join(',')}`);
    if (options.appendSystemPrompt) flags.push(`--append-system-prompt=${options.appendSystemPrompt}`);
    if (options.includePartialMessages) flags.push('--include-partial-messages');
    if (options.resumeSessionId) flags.push(`--resume=${options.resumeSessionId}`);
    return flags;
  }
}

/** The CLI sends ANTHROPIC_API_KEY as `x-api-key` to ANTHROPIC_BASE_URL: the gateway takes the run token there. */
function gatewayEnv(gateway: { url: string; token: string }): Record<string, string> {
  return { ANTHROPIC_BASE_URL: gateway.url, ANTHROPIC_API_KEY: gateway.token };
}

function isEnabled(flag: string | undefined): boolean {
  return flag === '1' || flag === 'true';
}
