import { Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { AppConfig } from '../../config/app-config';
import { ClaudeProvider } from '../../integrations/claude/claude.provider';
import { ParsedLine, StreamJsonReader } from '../../integrations/claude/stream-json-reader';
import { SandboxProcess, SandboxProvider } from '../../integrations/sandbox/sandbox-provider';
import { ModelGatewayTokens } from '../model-gateway/model-gateway-tokens.service';
import { RunEventType } from './run-event.entity';
import { RunEventLog } from './run-event-log';
import { Run, RunStatus } from './run.entity';

const CLAUDE_EVENT_TYPES = new Set<RunEventType>(['system', 'assistant', 'user', 'stream_event', 'result']);
const STDERR_TAIL_BYTES = 4096;
/** Conversation state lives on the volume, beside (not inside) the project's own .claude folder. */
export const CLAUDE_STATE_DIR = '.claude-state';

interface ActiveRun {
  process?: SandboxProcess;
  stopReason?: 'cancelled' | 'timed_out' | 'interrupted';
  finished: Promise<void>;
}

interface ResultSummary {
  subtype?: string;
  is_error?: boolean;
  result?: string;
  session_id?: string;
  total_cost_usd?: number;
  usage?: Record<string, unknown>;
  num_turns?: number;
}

/** Runs the Claude CLI for a run inside its sandbox and turns its output into run events. */
@Injectable()
export class RunExecutor implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(RunExecutor.name);
  private readonly active = new Map<string, ActiveRun>();

  constructor(
    @InjectRepository(Run) private readonly runs: Repository<Run>,
    private readonly events: RunEventLog,
    private readonly claude: ClaudeProvider,
    private readonly provider: SandboxProvider,
    private readonly config: AppConfig,
    private readonly gatewayTokens: ModelGatewayTokens,
  ) {}

  /** Says once, at start-up, when runs cannot go through the model gateway and what that exposes. */
  onApplicationBootstrap(): void {
    const reason = this.claude.isConfigured() ? this.gatewayUnavailableReason() : null;
    if (reason) {
      this.logger.warn(
        { reason },
        `Model credentials are injected into the Claude process of each run: any process in a sandbox can read them (${reason})`,
      );
    }
  }

  /** Starts the run in the background; client disconnects never stop it, only cancel() does. */
  start(run: Run, target: { providerSandboxId: string; workdir: string; volumeMountPath: string }): void {
    this.events.open(run.id);
    const entry: ActiveRun = { finished: Promise.resolve() };
    this.active.set(run.id, entry);
    entry.finished = this.execute(run, target, entry)
      .catch(async (error: Error) => {
        this.logger.error({ run_id: run.id, err: error }, 'run failed unexpectedly');
        await this.finish(run, 'failed', { error: error.message });
      })
      .finally(() => {
        this.active.delete(run.id);
        return this.revokeGatewayToken(run.id);
      });
  }

  /** Kills the Claude process of an active run; resolves once the run is recorded as ended. */
  async cancel(runId: string, reason: 'cancelled' | 'interrupted' = 'cancelled'): Promise<boolean> {
    const entry = this.active.get(runId);
    if (!entry) return false;
    entry.stopReason ??= reason;
    await entry.process?.kill();
    await entry.finished;
    return true;
  }

  /** The service is stopping: active runs end as interrupted (their streams end with done). */
  async onModuleDestroy(): Promise<void> {
    await Promise.all([...this.active.keys()].map((runId) => this.cancel(runId, 'interrupted')));
  }

  private async execute(run: Run, target: { providerSandboxId: string; workdir: string; volumeMountPath: string }, entry: ActiveRun): Promise<void> {
    const modelGateway = await this.modelGatewayFor(run);
    const invocation = this.claude.buildInvocation({
      prompt: run.prompt,
      resumeSessionId: run.options.resumed_session_id ?? undefined,
      model: run.options.model ?? undefined,
      maxTurns: run.options.max_turns ?? undefined,
      allowedTools: run.options.allowed_tools,
      disallowedTools: run.options.disallowed_tools,
      appendSystemPrompt: run.options.append_system_prompt ?? undefined,
      includePartialMessages: run.options.include_partial_messages,
      runsAsRoot: true,
      configDir: `${target.volumeMountPath}/${CLAUDE_STATE_DIR}`,
      modelGateway,
    });
    Object.assign(run, { status: 'running' as RunStatus, startedAt: new Date() });
    await this.runs.update({ id: run.id }, { status: 'running', startedAt: run.startedAt });
    this.logger.log({ run_id: run.id, sandbox_id: run.sandboxId, resumed_session_id: run.options.resumed_session_id, model_gateway: Boolean(modelGateway) }, 'run started');

    const process = await this.provider.exec(target.providerSandboxId, { argv: invocation.argv, env: invocation.env, secretEnv: invocation.secretEnv, workdir: target.workdir });
    entry.process = process;
    if (entry.stopReason) await process.kill();
    const watchdog = this.watch(run, entry, process);
    let result: ResultSummary | undefined;
    const stderrTail: string[] = [];
    const stdoutDone = this.pump(process.stdout, (line) => {
      watchdog.activity();
      if (line.kind === 'json' && line.type === 'result') result = line.payload as ResultSummary;
      return this.recordLine(run.id, line);
    });
    const stderrDone = this.pump(process.stderr, (line) => {
      watchdog.activity();
      const text = line.kind === 'json' ? JSON.stringify(line.payload) : line.kind === 'output' ? line.line : line.head;
      stderrTail.push(text);
      while (stderrTail.join('\n').length > STDERR_TAIL_BYTES && stderrTail.length > 1) stderrTail.shift();
      return this.events.append(run.id, 'stderr', { line: text });
    });
    const [exit] = await Promise.all([process.wait(), stdoutDone, stderrDone]);
    watchdog.stop();
    await this.finish(run, this.outcome(entry, result), {
      exitCode: exit.exitCode,
      result,
      error: this.errorOf(entry, result, stderrTail),
    });
  }

  /** The gateway URL and a fresh run token, or undefined when the credentials must be injected as before. */
  private async modelGatewayFor(run: Run): Promise<{ url: string; token: string } | undefined> {
    const url = this.provider.modelGatewayUrl();
    if (url === null || !this.claude.supportsModelGateway()) return undefined;
    return { url, token: await this.gatewayTokens.issue(run.id) };
  }

  private gatewayUnavailableReason(): string | null {
    if (!this.claude.supportsModelGateway()) return 'Bedrock and Vertex credentials are not served through the model gateway yet';
    if (this.provider.modelGatewayUrl() === null) return 'sandboxes of this engine cannot reach the model gateway; set MODEL_GATEWAY_PUBLIC_URL';
    return null;
  }

  /** Idempotent; a failure is logged, never turned into a run failure. */
  private async revokeGatewayToken(runId: string): Promise<void> {
    try {
      await this.gatewayTokens.revoke(runId);
    } catch (error) {
      this.logger.error({ run_id: runId, err: error }, 'could not revoke the run token of the model gateway');
    }
  }

  private outcome(entry: ActiveRun, result: ResultSummary | undefined): RunStatus {
    if (entry.stopReason) return entry.stopReason;
    if (!result) return 'failed';
    return result.is_error || (result.subtype && result.subtype !== 'success') ? 'failed' : 'succeeded';
  }

  private errorOf(entry: ActiveRun, result: ResultSummary | undefined, stderrTail: string[]): string | null {
    if (entry.stopReason === 'timed_out') return 'The run produced no output for too long or exceeded its time limit, and was stopped';
    if (entry.stopReason === 'cancelled') return null;
    if (entry.stopReason === 'interrupted') return 'The service stopped while this run was active';
    if (!result) return `Claude exited without a result. ${stderrTail.join('\n').trim() || 'No error output.'}`.trim();
    if (result.is_error || (result.subtype && result.subtype !== 'success')) return `${result.subtype ?? 'error'}: ${result.result ?? stderrTail.join('\n')}`.trim();
    return null;
  }

  private watch(run: Run, entry: ActiveRun, process: SandboxProcess) {
    const stop = (why: string) => {
      if (entry.stopReason) return;
      entry.stopReason = 'timed_out';
      this.logger.warn({ run_id: run.id, why }, 'run watchdog fired');
      void process.kill();
    };
    const idleMs = this.config.claude.idleTimeoutSeconds * 1000;
    let idle = setTimeout(() => stop('idle'), idleMs);
    const overall = setTimeout(() => stop('timeout'), run.options.timeout_seconds * 1000);
    return {
      activity: () => {
        clearTimeout(idle);
        idle = setTimeout(() => stop('idle'), idleMs);
      },
      stop: () => {
        clearTimeout(idle);
        clearTimeout(overall);
      },
    };
  }

  private async pump(stream: NodeJS.ReadableStream, onLine: (line: ParsedLine) => Promise<void>): Promise<void> {
    const reader = new StreamJsonReader();
    let pending = Promise.resolve();
    const enqueue = (line: ParsedLine) => {
      pending = pending.then(() => onLine(line)).catch((error: Error) => this.logger.error({ err: error }, 'could not record a run event'));
    };
    for await (const chunk of stream) reader.push(chunk as Buffer).forEach(enqueue);
    reader.end().forEach(enqueue);
    await pending;
  }

  private recordLine(runId: string, line: ParsedLine): Promise<void> {
    if (line.kind === 'json' && CLAUDE_EVENT_TYPES.has(line.type as RunEventType)) return this.events.append(runId, line.type as RunEventType, line.payload);
    if (line.kind === 'json') return this.events.append(runId, 'output', { line: JSON.stringify(line.payload) });
    if (line.kind === 'output') return this.events.append(runId, 'output', { line: line.line });
    return this.events.append(runId, 'error', { message: `an output line of ${line.bytes} bytes exceeded the 10 MB limit and was dropped` });
  }

  private async finish(run: Run, status: RunStatus, outcome: { exitCode?: number; result?: ResultSummary; error?: string | null }): Promise<void> {
    // Before `done` is visible: whoever sees the run ended can rely on its token being dead.
    await this.revokeGatewayToken(run.id);
    const { result } = outcome;
    Object.assign(run, {
      status,
      exitCode: outcome.exitCode ?? null,
      sessionId: result?.session_id ?? run.sessionId,
      result: result?.result ?? null,
      totalCostUsd: result?.total_cost_usd ?? null,
      usage: result?.usage ?? null,
      numTurns: result?.num_turns ?? null,
      error: outcome.error ?? null,
      finishedAt: new Date(),
    });
    await this.runs.update(
      { id: run.id },
      { status, exitCode: run.exitCode, sessionId: run.sessionId, result: run.result, totalCostUsd: run.totalCostUsd, usage: run.usage as never, numTurns: run.numTurns, error: run.error, finishedAt: run.finishedAt },
    );
    if (run.error) await this.events.append(run.id, 'error', { message: run.error });
    await this.events.append(run.id, 'done', doneEventOf(run));
    await this.events.close(run.id);
    this.logger.log({ run_id: run.id, status, exit_code: run.exitCode, total_cost_usd: run.totalCostUsd }, 'run finished');
  }
}

export function doneEventOf(run: Run) {
  return { run_id: run.id, status: run.status, exit_code: run.exitCode, session_id: run.sessionId, total_cost_usd: run.totalCostUsd, usage: run.usage };
}
