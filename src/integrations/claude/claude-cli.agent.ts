import { Injectable } from '@nestjs/common';
import { AppConfig } from '../../config/app-config';
import { SandboxProvider } from '../sandbox/sandbox-provider';
import { ClaudeAgent, ClaudeExecution, ClaudeRunOptions, ClaudeSandbox } from './claude.agent';
import { hasModelCredentials, MISSING_CREDENTIALS_MESSAGE, servedByModelGateway } from './claude.credentials';
import { ClaudeCliExecution } from './claude-cli.execution';
import { claudeCliInvocation } from './claude-cli.invocation';

/** Conversation state lives on the volume, beside (not inside) the project's own .claude folder. */
export const CLAUDE_STATE_DIR = '.claude-state';

/** The Claude Code CLI, run in the sandbox through the sandbox engine; processes there run as root. */
@Injectable()
export class ClaudeCliAgent extends ClaudeAgent {
  constructor(
    private readonly config: AppConfig,
    private readonly sandboxes: SandboxProvider,
  ) {
    super();
  }

  isConfigured(): boolean {
    return hasModelCredentials(this.config.claude.credentials);
  }

  missingCredentialsMessage(): string {
    return MISSING_CREDENTIALS_MESSAGE;
  }

  modelGatewayUnavailableReason(): string | null {
    if (!servedByModelGateway(this.config.claude.credentials)) return 'Bedrock and Vertex credentials are not served through the model gateway yet';
    if (this.sandboxes.modelGatewayUrl() === null) return 'sandboxes of this engine cannot reach the model gateway; set MODEL_GATEWAY_PUBLIC_URL';
    return null;
  }

  start(sandbox: ClaudeSandbox, options: ClaudeRunOptions): ClaudeExecution {
    const { modelGatewayToken, ...invocationOptions } = options;
    const invocation = claudeCliInvocation(this.config, {
      ...invocationOptions,
      runsAsRoot: true,
      configDir: `${sandbox.volumeMountPath}/${CLAUDE_STATE_DIR}`,
      modelGateway: modelGatewayToken === undefined ? undefined : { url: this.modelGatewayUrl(), token: modelGatewayToken },
    });
    return new ClaudeCliExecution(this.sandboxes.exec(sandbox.providerSandboxId, { ...invocation, workdir: sandbox.workdir }));
  }

  private modelGatewayUrl(): string {
    const url = this.sandboxes.modelGatewayUrl();
    if (url === null) throw new Error('a model gateway token was given, but sandboxes of this engine cannot reach the gateway');
    return url;
  }
}
