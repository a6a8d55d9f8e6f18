import { setTimeout as sleep } from 'node:timers/promises';
import { Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { AppConfig } from '../../config/app-config';
import { ClaudeAgent, ClaudeExecution, ClaudeResult, ClaudeRunOptions, ClaudeSandbox } from '../../integrations/claude/claude.agent';
import { ClaudeEvent, ExecutionDetachedError } from '../../integrations/claude/claude.events';
import { SandboxActivity } from '../sandboxes/sandbox-activity';
import { ModelGatewayTokens } from './model-gateway-tokens.service';
import { RunEventType } from './run-event.entity';
import { RunEventLog } from './run-event-log';
import { Run } from './run.entity';
import { IllegalRunTransitionError, RunStatus } from './run-state';
import { RunLeases } from './run-leases';
import { RunStateStore } from './run-state.store';
import { RunWatchdog } from './run-watchdog';

type StopReason = 'cancelled' | 'timed_out' | 'interrupted';

const STOP_ERRORS: Record<StopReason, string | null> = {
  cancelled: null,
  timed_out: 'The run produced no output for too long or exceeded its time limit, and was stopped',
  interrupted: 'The service stopped while this run was active',
};

interface ActiveRun {
  sandboxId: string;
  execution?: ClaudeExecution;
  stopReason?: StopReason;
  /** Why it was stopped, when STOP_ERRORS does not say it. */
  stopError?: string;
  /** The service stops: the run goes on without it, and the next service follows it again. */
  detaching?: boolean;
  /** Reading the agent's output waits for the database to write what was read. */
  paused?: boolean;
  /** Its end is being recorded: a lost lease no longer matters. */
  finishing?: boolean;
  finished: Promise<void>;
}

/** How long a stopping service waits for the events it has read to be written. */
const FLUSH_ON_STOP_MS = 3_000;
/** Events of one run read but not yet written beyond which reading pauses (bounded memory in an outage). */
const MAX_UNWRITTEN_EVENTS = 1_000;
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2_000;

interface Outcome {
  status: RunStatus;
  result?: ClaudeResult;
  error: string | null;
}

/** Runs Claude for a run inside its sandbox, records what it produces as run events, and ends the run. */
@Injectable()
export class RunExecutor implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(RunExecutor.name);
  private readonly active = new Map<string, ActiveRun>();
  private stopping = false;
  private renewTimer?: NodeJS.Timeout;

  constructor(
    private readonly states: RunStateStore,
    private readonly events: RunEventLog,
    private readonly claude: ClaudeAgent,
    private readonly config: AppConfig,
    private readonly gatewayTokens: ModelGatewayTokens,
    private readonly activity: SandboxActivity,
    private readonly leases: RunLeases,
  ) {
    activity.onEnding((sandboxId, reason) => this.stopRunsIn(sandboxId, reason));
  }

  /** Whether this instance follows the run now. */
  isFollowing(runId: string): boolean {
    return this.active.has(runId);
  }

  /** Renews the leases of the runs this instance follows; stops following those another instance took over. */
  private async renewLeases(): Promise<void> {
    const following = [...this.active.entries()].filter(([, entry]) => !entry.detaching);
    let lost: string[];
    try {
      lost = await this.leases.renew(following.map(([runId]) => runId));
    } catch (error) {
      return this.logger.warn({ err: error }, 'could not renew the leases of active runs');
    }
    for (const runId of lost) {
      const entry = this.active.get(runId);
      if (!entry || entry.detaching || entry.finishing) continue;
      entry.detaching = true;
      this.logger.warn({ run_id: runId }, 'another instance took this run over: no longer following it');
      void entry.execution?.detach().catch(() => undefined);
    }
  }

  private startRenewingLeases(): void {
    this.renewTimer ??= setInterval(() => void this.renewLeases(), (this.leases.ttlSeconds * 1000) / 3).unref();
  }

  /** Says once, at start-up, when runs cannot go through the model gateway and what that exposes. */
  onApplicationBootstrap(): void {
    const reason = this.claude.isConfigured() ? this.claude.modelGatewayUnavailableReason() : null;
    if (reason) {
      this.logger.warn(
        { reason },
        `Model credentials are injected into the Claude process of each run: any process in a sandbox can read them (${reason})`,
      );
    }
  }

  /** Starts the run in the background; client disconnects never stop it, only cancel() does. */
  start(run: Run, sandbox: ClaudeSandbox): void {
    this.events.open(run.id);
    this.follow(run, (entry) => this.execute(run, sandbox, entry));
  }

  /**
   * Follows again a run that was running when the service stopped: its agent went on, and its
   * output is read from where the recorded events end, so the events continue with no gap and no
   * duplicate; its time limit still counts from its start.
   */
  async resume(run: Run, sandbox: ClaudeSandbox): Promise<void> {
    this.events.open(run.id, (await this.events.lastSeq(run.id)) + 1);
    const from = await this.events.resumePoint(run.id);
    this.follow(run, (entry) => this.watch(run, entry, sandbox, this.claude.resume(sandbox, run.id, from)));
    this.logger.log({ run_id: run.id, sandbox_id: run.sandboxId, offsets: from.offsets }, 'run followed again from its recorded events');
  }

  private follow(run: Run, work: (entry: ActiveRun) => Promise<void>): void {
    this.startRenewingLeases();
    const endActivity = this.activity.begin(run.sandboxId);
    const entry: ActiveRun = { sandboxId: run.sandboxId, finished: Promise.resolve() };
    this.active.set(run.id, entry);
    entry.finished = work(entry)
      .catch((error: Error) => {
        if (entry.detaching) return;
        this.logger.error({ run_id: run.id, err: error }, 'run failed unexpectedly');
        return this.finish(run, { status: 'failed', error: error.message });
      })
      .catch((error: Error) => this.logger.error({ run_id: run.id, err: error }, 'could not record the end of a run'))
      .finally(() => {
        this.active.delete(run.id);
        // A run left to the next service keeps its model gateway token: its agent is still working.
        return Promise.all([entry.detaching ? undefined : this.revokeGatewayToken(run.id), this.events.close(run.id), endActivity().catch(() => undefined)]);
      });
  }

  /** Stops Claude for an active run; resolves once the run is recorded as ended. */
  async cancel(runId: string, reason: 'cancelled' | 'interrupted' = 'cancelled'): Promise<boolean> {
    const entry = this.active.get(runId);
    if (!entry) return false;
    entry.stopReason ??= reason;
    await entry.execution?.cancel();
    await entry.finished;
    return true;
  }

  /** The service ends a sandbox at its lifetime: its runs end interrupted, saying so (not failed without a result). */
  private async stopRunsIn(sandboxId: string, reason: string): Promise<void> {
    const inSandbox = [...this.active].filter(([, entry]) => entry.sandboxId === sandboxId && !entry.stopReason);
    await Promise.all(
      inSandbox.map(([runId, entry]) => {
        entry.stopError = reason === 'timeout' ? 'sandbox lifetime reached' : `sandbox stopped (${reason})`;
        return this.cancel(runId, 'interrupted');
      }),
    );
  }

  /**
   * The service is stopping: active runs go on in their sandboxes, untouched. What was read is
   * written (for a few seconds at most; the rest stays in the agents' logs, read again by the next
   * service), then their streams end without `done`, and clients reconnect with Last-Event-ID.
   */
  async onModuleDestroy(): Promise<void> {
    this.stopping = true;
    clearInterval(this.renewTimer);
    const active = [...this.active.entries()];
    for (const [, entry] of active) entry.detaching = true;
    await Promise.all(active.map(([, entry]) => entry.execution?.detach().catch(() => undefined)));
    const flushed = Promise.all(active.map(([, entry]) => entry.finished));
    const deadline = new Promise((resolve) => setTimeout(resolve, FLUSH_ON_STOP_MS).unref());
    if ((await Promise.race([flushed.then(() => 'flushed'), deadline])) !== 'flushed') {
      for (const [runId] of active) this.events.abandon(runId);
      await flushed;
    }
    if (active.length === 0) return;
    // Another instance (or this one, started again) takes them over at once.
    await this.leases.release(active.map(([runId]) => runId)).catch((error: unknown) => this.logger.warn({ err: error }, 'could not release the leases of active runs'));
    this.logger.log({ run_ids: active.map(([runId]) => runId) }, 'runs left running for the next start of the service');
  }

  private async execute(run: Run, sandbox: ClaudeSandbox, entry: ActiveRun): Promise<void> {
    const modelGatewayToken = await this.modelGatewayToken(run);
    // Owned from the moment it runs: no other instance may take it for an unfollowed one.
    await this.states.move(run, 'running', { startedAt: new Date(), ...this.leases.newLease() });
    this.logger.log({ run_id: run.id, sandbox_id: run.sandboxId, resumed_session_id: run.options.resumed_session_id, model_gateway: Boolean(modelGatewayToken) }, 'run started');
    await this.watch(run, entry, sandbox, this.claude.start(sandbox, run.id, claudeOptionsOf(run, modelGatewayToken)));
  }

  /** Records the execution's events until it ends, then ends the run; returns early when the service detaches. */
  private async watch(run: Run, entry: ActiveRun, sandbox: ClaudeSandbox, first: ClaudeExecution): Promise<void> {
    for (let execution = first; ; execution = await this.followAgain(run, sandbox, entry)) {
      const result = await this.watchOnce(run, entry, execution);
      if (result === 'detached') return;
      if (result === 'paused') continue;
      entry.finishing = true;
      // A cancel that reached another instance killed the agent and said so here, in the run's row.
      if (!entry.stopReason && (await this.leases.cancelRequested(run.id).catch(() => false))) entry.stopReason = 'cancelled';
      return this.finish(run, outcomeOf(entry, result));
    }
  }

  /**
   * Records one execution's events until it ends. When the events read outrun what the database
   * writes (an outage), reading pauses: the output waits in the agent's log, not in this process.
   */
  private async watchOnce(run: Run, entry: ActiveRun, execution: ClaudeExecution): Promise<ClaudeResult | 'paused' | 'detached'> {
    entry.execution = execution;
    if (entry.stopReason) await execution.cancel();
    const watchdog = new RunWatchdog(this.limitsOf(run), (why) => this.timeOut(run, entry, why));
    const subscription = execution.events$.subscribe((event) => {
      watchdog.activity();
      this.record(run.id, event);
      if (!entry.paused && this.events.pendingOf(run.id) >= MAX_UNWRITTEN_EVENTS) {
        entry.paused = true;
        this.logger.warn({ run_id: run.id, unwritten: MAX_UNWRITTEN_EVENTS }, 'run events are not being written: reading the agent\'s output pauses until they are');
        void execution.detach();
      }
    });
    try {
      return await execution.result;
    } catch (error) {
      if (entry.detaching) return 'detached';
      if (error instanceof ExecutionDetachedError) return entry.paused ? 'paused' : 'detached';
      throw error;
    } finally {
      watchdog.stop();
      subscription.unsubscribe();
    }
  }

  /** Once everything read is written, reading resumes where the written events end. */
  private async followAgain(run: Run, sandbox: ClaudeSandbox, entry: ActiveRun): Promise<ClaudeExecution> {
    await this.events.written(run.id);
    entry.paused = false;
    const from = await this.persistently(run.id, 'read where the run\'s events end', () => this.events.resumePoint(run.id));
    this.logger.log({ run_id: run.id, offsets: from.offsets }, 'run events are written again: reading resumes');
    return this.claude.resume(sandbox, run.id, from);
  }

  /** A fresh run token when Claude can go through the model gateway, else undefined (credentials are injected). */
  private async modelGatewayToken(run: Run): Promise<string | undefined> {
    if (this.claude.modelGatewayUnavailableReason() !== null) return undefined;
    return this.gatewayTokens.issue(run.id);
  }

  /** Idempotent; a failure is logged, never turned into a run failure. */
  private async revokeGatewayToken(runId: string): Promise<void> {
    try {
      await this.gatewayTokens.revoke(runId);
    } catch (error) {
      this.logger.error({ run_id: runId, err: error }, 'could not revoke the run token of the model gateway');
    }
  }

  /**
   * Retries `work` with backoff while it fails for a reason that may pass (the database restarting,
   * a full disk); a refused state move (someone else ended the run) is final, and so is the
   * service stopping (the next start finishes the run from its log).
   */
  private async persistently<T>(runId: string, what: string, work: () => Promise<T>): Promise<T> {
    for (let delay = RETRY_FIRST_MS; ; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
      try {
        return await work();
      } catch (error) {
        if (error instanceof IllegalRunTransitionError || this.stopping) throw error;
        this.logger.warn({ run_id: runId, err: error }, `could not ${what}; retrying in ${delay} ms`);
        await sleep(delay);
      }
    }
  }

  /** The time limit counts from the run's start, also for a run resumed after a restart. */
  private limitsOf(run: Run): { idleMs: number; totalMs: number } {
    const elapsedMs = run.startedAt ? Date.now() - run.startedAt.getTime() : 0;
    return { idleMs: this.config.claude.idleTimeoutSeconds * 1000, totalMs: Math.max(0, run.options.timeout_seconds * 1000 - elapsedMs) };
  }

  private timeOut(run: Run, entry: ActiveRun, why: 'idle' | 'timeout'): void {
    if (entry.stopReason) return;
    entry.stopReason = 'timed_out';
    this.logger.warn({ run_id: run.id, why }, 'run watchdog fired');
    void entry.execution?.cancel();
  }

  /** Events are numbered as they are produced, each with where it ends in the agent's log; writes retry until they succeed. */
  private record(runId: string, event: ClaudeEvent): void {
    const [type, data] = runEventOf(event);
    this.events.append(runId, type, data, event.position).catch((error: Error) => this.logger.error({ run_id: runId, err: error }, 'could not record a run event'));
  }

  /**
   * Records the end, retrying through a database outage until it is written: a run whose agent
   * ended while the database was down must not stay `running` without `done`. Its events are
   * written first, so a run never reads as ended before its last event is stored.
   */
  private async finish(run: Run, outcome: Outcome): Promise<void> {
    await this.events.written(run.id);
    // Before `done` is visible: whoever sees the run ended can rely on its token being dead.
    await this.persistently(run.id, 'revoke the run token of the model gateway', () => this.gatewayTokens.revoke(run.id));
    const { result } = outcome;
    await this.persistently(run.id, 'record the end of the run', () =>
      this.states.move(run, outcome.status, {
        exitCode: result?.exitCode ?? null,
        sessionId: result?.sessionId ?? run.sessionId,
        result: result?.result ?? null,
        totalCostUsd: result?.totalCostUsd ?? null,
        usage: result?.usage ?? null,
        numTurns: result?.numTurns ?? null,
        error: outcome.error,
        finishedAt: new Date(),
      }),
    );
    if (run.error) await this.events.append(run.id, 'error', { message: run.error });
    await this.events.append(run.id, 'done', doneEventOf(run));
    await this.events.close(run.id);
    this.logger.log({ run_id: run.id, status: run.status, exit_code: run.exitCode, total_cost_usd: run.totalCostUsd }, 'run finished');
  }
}

function claudeOptionsOf(run: Run, modelGatewayToken: string | undefined): ClaudeRunOptions {
  return {
    prompt: run.prompt,
    resumeSessionId: run.options.resumed_session_id ?? undefined,
    model: run.options.model ?? undefined,
    maxTurns: run.options.max_turns ?? undefined,
    allowedTools: run.options.allowed_tools,
    disallowedTools: run.options.disallowed_tools,
    appendSystemPrompt: run.options.append_system_prompt ?? undefined,
    includePartialMessages: run.options.include_partial_messages,
    modelGatewayToken,
  };
}

function outcomeOf({ stopReason, stopError }: ActiveRun, result: ClaudeResult): Outcome {
  if (stopReason) return { status: stopReason, result, error: stopError ?? STOP_ERRORS[stopReason] };
  return { status: result.status, result, error: result.error };
}

function runEventOf(event: ClaudeEvent): [RunEventType, unknown] {
  switch (event.kind) {
    case 'message':
      return [event.type, event.payload];
    case 'output':
      return ['output', { line: event.line }];
    case 'stderr':
      return ['stderr', { line: event.line }];
    case 'oversized':
      return ['error', { message: `an output line of ${event.bytes} bytes exceeded the ${event.limitBytes / 1024 / 1024} MB limit and was dropped` }];
  }
}

export function doneEventOf(run: Run) {
  return { run_id: run.id, status: run.status, exit_code: run.exitCode, session_id: run.sessionId, total_cost_usd: run.totalCostUsd, usage: run.usage };
}
