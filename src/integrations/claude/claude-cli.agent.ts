import { Injectable } from '@nestjs/common';
import { AppConfig } from '../../config/app-config';
import { SandboxProvider } from '../sandbox/sandbox-provider';
import { ClaudeAgent, ClaudeExecution, ClaudeRunOptions, ClaudeSandbox, ResumePoint, START_OF_RUN } from './claude.agent';
import { hasModelCredentials, MISSING_CREDENTIALS_MESSAGE, servedByModelGateway } from './claude.credentials';
import { ClaudeCliExecution, type SandboxExec } from './claude-cli.execution';
import { killArgv, runLogDir, startArgv } from './claude-run-log';
import type { SandboxProcess } from '../sandbox/sandbox-provider';
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

  start(sandbox: ClaudeSandbox, runId: string, options: ClaudeRunOptions): ClaudeExecution {
    const { modelGatewayToken, ...invocationOptions } = options;
    const invocation = claudeCliInvocation(this.config, {
      ...invocationOptions,
      runsAsRoot: true,
      configDir: `${sandbox.volumeMountPath}/${CLAUDE_STATE_DIR}`,
      modelGateway: modelGatewayToken === undefined ? undefined : { url: this.modelGatewayUrl(), token: modelGatewayToken },
    });
    const dir = runLogDir(runId);
    const exec = this.execIn(sandbox);
    const starter = exec({ ...invocation, argv: startArgv(dir, invocation.argv), workdir: sandbox.workdir });
    return new ClaudeCliExecution(exec, dir, { launched: starter, started: starter.then(requireStarted) }, START_OF_RUN);
  }

  resume(sandbox: ClaudeSandbox, runId: string, from: ResumePoint): ClaudeExecution {
    return new ClaudeCliExecution(this.execIn(sandbox), runLogDir(runId), { launched: Promise.resolve(), started: Promise.resolve() }, from);
  }

  async kill(sandbox: ClaudeSandbox, runId: string): Promise<void> {
    const killer = await this.execIn(sandbox)({ argv: killArgv(runLogDir(runId)) });
    killer.stdout.resume();
    killer.stderr.resume();
    await killer.wait();
  }

  private execIn(sandbox: ClaudeSandbox): SandboxExec {
    return (request) => this.sandboxes.exec(sandbox.providerSandboxId, request);
  }

  private modelGatewayUrl(): string {
    const url = this.sandboxes.modelGatewayUrl();
    if (url === null) throw new Error('a model gateway token was given, but sandboxes of this engine cannot reach the gateway');
    return url;
  }
}

/** The starter exits 0 once the agent runs; anything else means it never started, said on its stderr. */
async function requireStarted(starter: SandboxProcess): Promise<void> {
  let errors = '';
  starter.stderr.on('data', (chunk: Buffer) => (errors = (errors + chunk.toString()).slice(-2000)));
  starter.stdout.resume();
  const { exitCode } = await starter.wait();
  if (exitCode !== 0) throw new Error(`Claude could not be started in the sandbox (exit code ${exitCode}): ${errors.trim() || 'no error output'}`);
}
