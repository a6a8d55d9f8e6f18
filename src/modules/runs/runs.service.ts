import { Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { setTimeout as sleep } from 'node:timers/promises';
import { In, LessThan, Repository } from 'typeorm';
import { AppConfig } from '../../config/app-config';
import { InvalidInputError } from '../../common/domain-error';
import { ClaudeAgent } from '../../integrations/claude/claude.agent';
import type { Sandbox } from '../sandboxes/sandbox.entity';
import { SandboxesService } from '../sandboxes/sandboxes.service';
import { CreateRunDto } from './run.dto';
import { Run } from './run.entity';
import { ACTIVE_RUN_STATUSES, IllegalRunTransitionError, isActiveRunStatus } from './run-state';
import { RunLeases } from './run-leases';
import { RunStateStore } from './run-state.store';
import { RunEventLog } from './run-event-log';
import { doneEventOf, RunExecutor } from './run-executor';
import { ModelGatewayTokens, ModelUsage } from './model-gateway-tokens.service';
import { ModelNotConfiguredError, RunAlreadyActiveError, RunNotFoundError } from './runs.errors';
import { WorkspaceConversations } from './workspace-conversations';

const UNIQUE_VIOLATION = '23505';
/** A run stays queued for milliseconds while its instance starts it; older ones were left by an instance that stopped. */
const QUEUED_GRACE_MS = 60_000;
const REMOTE_CANCEL_WAIT_MS = 15_000;
const REMOTE_CANCEL_POLL_MS = 200;

@Injectable()
export class RunsService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(RunsService.name);

  constructor(
    @InjectRepository(Run) private readonly runs: Repository<Run>,
    private readonly states: RunStateStore,
    private readonly sandboxes: SandboxesService,
    private readonly executor: RunExecutor,
    private readonly events: RunEventLog,
    private readonly claude: ClaudeAgent,
    private readonly config: AppConfig,
    private readonly gatewayTokens: ModelGatewayTokens,
    private readonly conversations: WorkspaceConversations,
    private readonly leases: RunLeases,
  ) {}

  private takeOverTimer?: NodeJS.Timeout;

  /**
   * Runs that were running when the service stopped went on in their sandboxes: they are followed
   * again from where their recorded events end. Only a run whose sandbox is gone, or that had not
   * started yet, ends interrupted (its stream ends with done).
   */
  async onApplicationBootstrap(): Promise<void> {
    await this.sandboxes.reconcileAfterRestart();
    for (const run of await this.runs.find({ where: { status: 'queued', createdAt: LessThan(new Date(Date.now() - QUEUED_GRACE_MS)) } })) {
      await this.interruptOrphan(run, 'The service restarted before this run started');
    }
    await this.takeOverUnfollowedRuns();
    await this.gatewayTokens.revokeEndedRuns();
    this.takeOverTimer = setInterval(() => void this.takeOverUnfollowedRuns(), (this.leases.ttlSeconds * 1000) / 3).unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.takeOverTimer);
  }

  /**
   * Running runs that no instance follows — their owner stopped or died (lease run out), or it was
   * this instance before a restart — are taken over: followed again from their recorded events.
   */
  private async takeOverUnfollowedRuns(): Promise<void> {
    let unfollowed: Run[];
    try {
      unfollowed = await this.leases.unfollowed();
    } catch (error) {
      return this.logger.warn({ err: error }, 'could not look for runs to take over');
    }
    for (const run of unfollowed) {
      if (this.executor.isFollowing(run.id)) continue;
      try {
        if (await this.leases.acquire(run.id)) await this.resumeOrInterrupt(run);
      } catch (error) {
        this.logger.warn({ run_id: run.id, err: error }, 'could not take a run over');
      }
    }
  }

  private async resumeOrInterrupt(run: Run): Promise<void> {
    const stored = await this.sandboxes.findOwned(run.accountId, run.sandboxId).catch(() => null);
    const sandbox = stored && (await this.sandboxes.requireRunning(stored).catch(() => null));
    if (!sandbox) {
      return this.interruptOrphan(run, `The sandbox of this run ended while the service was stopped (${stored?.exitReason ?? 'gone'})`);
    }
    await this.executor.resume(run, { providerSandboxId: sandbox.providerSandboxId, workdir: sandbox.config.workdir, volumeMountPath: sandbox.config.volume_mount_path });
  }

  private async interruptOrphan(run: Run, error: string): Promise<void> {
    try {
      await this.states.move(run, 'interrupted', { finishedAt: new Date(), error });
    } catch (error) {
      // Another instance ended it meanwhile: its stream already ends with done.
      if (error instanceof IllegalRunTransitionError) return;
      throw error;
    }
    this.events.open(run.id, (await this.events.lastSeq(run.id)) + 1);
    await this.events.append(run.id, 'done', doneEventOf(run));
    await this.events.close(run.id);
    this.logger.warn({ run_id: run.id, error }, 'run interrupted');
  }

  /** The sandbox is the caller's: SandboxAccessGuard loaded it for the account. It must be running. */
  async start(userId: string, stored: Sandbox, dto: CreateRunDto): Promise<Run> {
    if (!this.claude.isConfigured()) throw new ModelNotConfiguredError(this.claude.missingCredentialsMessage());
    if (dto.prompt.length > this.config.claude.maxPromptChars) throw new InvalidInputError(`prompt must be at most ${this.config.claude.maxPromptChars} characters`);
    const sandbox = await this.sandboxes.requireRunning(stored);
    const { accountId, id: sandboxId } = sandbox;
    const resumedSessionId = dto.resume === false ? null : await this.conversations.toContinue(sandbox);
    let run: Run;
    try {
      run = await this.runs.save(
        this.runs.create({
          sandboxId,
          accountId,
          createdBy: userId,
          prompt: dto.prompt,
          status: 'queued',
          sessionId: resumedSessionId,
          options: {
            resume: dto.resume !== false,
            model: dto.model ?? null,
            max_turns: dto.max_turns ?? null,
            allowed_tools: dto.allowed_tools ?? [],
            disallowed_tools: dto.disallowed_tools ?? [],
            append_system_prompt: dto.append_system_prompt ?? null,
            include_partial_messages: dto.include_partial_messages ?? false,
            timeout_seconds: dto.timeout_seconds ?? this.config.claude.defaultTimeoutSeconds,
            resumed_session_id: resumedSessionId,
          },
        }),
      );
    } catch (error) {
      if ((error as { code?: string }).code === UNIQUE_VIOLATION) throw new RunAlreadyActiveError((await this.activeRun(sandboxId))?.id ?? 'unknown');
      throw error;
    }
    this.logger.log({ run_id: run.id, sandbox_id: sandboxId }, 'run created');
    await this.sandboxes.touch(sandboxId);
    this.executor.start(run, { providerSandboxId: sandbox.providerSandboxId, workdir: sandbox.config.workdir, volumeMountPath: sandbox.config.volume_mount_path });
    return run;
  }

  list(sandbox: Sandbox): Promise<Run[]> {
    return this.runs.find({ where: { sandboxId: sandbox.id, accountId: sandbox.accountId }, order: { createdAt: 'DESC' } });
  }

  async get(accountId: string, sandboxId: string, runId: string): Promise<Run> {
    const run = await this.runs.findOneBy({ id: runId, sandboxId, accountId });
    if (!run) throw new RunNotFoundError();
    return run;
  }

  /** Token usage the model gateway recorded, for the runs that went through it. */
  modelUsageOf(runIds: string[]): Promise<Map<string, ModelUsage>> {
    return this.gatewayTokens.usageOf(runIds);
  }

  /**
   * Cancels where the run is followed; when another instance follows it, the cancel is recorded in
   * the run's row and the agent killed from here: its owner then records the end as cancelled.
   */
  async cancel(accountId: string, sandboxId: string, runId: string): Promise<Run> {
    const run = await this.get(accountId, sandboxId, runId);
    if (!isActiveRunStatus(run.status) || (await this.executor.cancel(run.id))) return this.get(accountId, sandboxId, runId);
    await this.leases.requestCancel(run.id);
    const sandbox = await this.sandboxes.findOwned(accountId, sandboxId);
    if (sandbox.providerSandboxId) {
      await this.claude.kill({ providerSandboxId: sandbox.providerSandboxId, workdir: sandbox.config.workdir, volumeMountPath: sandbox.config.volume_mount_path }, run.id).catch((error: unknown) => {
        this.logger.warn({ run_id: run.id, err: error }, 'could not kill the agent of a run another instance follows');
      });
    }
    return this.untilEnded(accountId, sandboxId, runId);
  }

  /** The run once its owner has recorded its end (or as it is after a while: the owner may be taking its time). */
  private async untilEnded(accountId: string, sandboxId: string, runId: string): Promise<Run> {
    const deadline = Date.now() + REMOTE_CANCEL_WAIT_MS;
    for (;;) {
      const run = await this.get(accountId, sandboxId, runId);
      if (!isActiveRunStatus(run.status) || Date.now() > deadline) return run;
      await sleep(REMOTE_CANCEL_POLL_MS);
    }
  }

  private activeRun(sandboxId: string): Promise<Run | null> {
    return this.runs.findOneBy({ sandboxId, status: In([...ACTIVE_RUN_STATUSES]) });
  }
}
