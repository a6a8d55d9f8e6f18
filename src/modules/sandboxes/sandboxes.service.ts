import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { In, Repository } from 'typeorm';
import { AppConfig } from '../../config/app-config';
import { parseDockerfileCommands } from '../../integrations/sandbox/dockerfile';
import { type CreateProgress, SandboxProvider, SandboxSpec, SandboxState, VolumeAccess } from '../../integrations/sandbox/sandbox-provider';
import { ClusterLock } from '../../common/cluster-lock';
import { InvalidInputError } from '../../common/domain-error';
import { assertSafeKeyPrefix } from '../../common/key-prefix';
import type { SnapshotStats } from '../snapshots/snapshot.types';
import { SnapshotsService } from '../snapshots/snapshots.service';
import { CappedOutput } from './exec-output';
import { CreateSandboxDto, ExecDto, ExecResponse } from './sandbox.dto';
import { Sandbox, SandboxConfig, type SandboxProgress } from './sandbox.entity';
import { networkOfConfig, networkOfRequest } from './sandbox-network';
import { ACTIVE_SANDBOX_STATUSES, assertTransition, type EndedSandboxStatus, isActive, type SandboxStatus, statusesLeadingTo } from './sandbox.state-machine';
import { workspaceStorageOf } from './sandbox-storage';
import { FinalSyncFailedError, SandboxFieldError, SandboxNotFoundError, SandboxNotRunningError } from './sandboxes.errors';
import { SandboxActivity } from './sandbox-activity';
import { SecretsStore } from './secrets.store';

export const DEFAULT_VOLUME_NAME = 'default';
export const DEFAULT_MOUNT_PATH = '/mnt/workspace';
/** The sweep ends a sandbox this close to its lifetime itself, so its final snapshot is still possible. */
const LIFETIME_LEAD_MS = 30_000;
/** A sandbox row without an engine sandbox this young may still be in creation by another instance. */
const CREATING_GRACE_MS = 10 * 60_000;
/** How long a starting instance waits for another one's reconciliation before giving up its start. */
const RECONCILE_WAIT_MS = 5 * 60_000;
/** Names of the background work instances sharing a database run one at a time (ClusterLock). */
export const SWEEP_WORK = 'sandbox-sweep';
export const RECONCILE_WORK = 'sandbox-reconcile';
/** Create progress is written to the row at most this often (the latest report wins). */
export const PROGRESS_WRITE_INTERVAL_MS = 250;

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

@Injectable()
export class SandboxesService implements OnApplicationBootstrap {
  private readonly logger = new Logger(SandboxesService.name);

  constructor(
    @InjectRepository(Sandbox) private readonly sandboxes: Repository<Sandbox>,
    private readonly provider: SandboxProvider,
    private readonly secrets: SecretsStore,
    private readonly snapshots: SnapshotsService,
    private readonly config: AppConfig,
    private readonly activity: SandboxActivity,
    // The default serves specs that build the service by hand: this process only.
    private readonly cluster: ClusterLock = new ClusterLock(),
  ) {}

  private reconciled?: Promise<void>;
  /** Engine sandboxes this instance's adapter knows (see attachHere). */
  private readonly attachedHere = new Set<string>();

  onApplicationBootstrap(): Promise<void> {
    return this.reconcileAfterRestart();
  }

  /**
   * Once per start of the service (runs wait for it before following their agents again):
   * re-attach every sandbox that still runs, record how the others ended while the service was
   * away, and stop engine sandboxes no row accounts for (the service stopped between creating one
   * and saving it). Instances sharing a database reconcile one after another, never together: two
   * starting at once would otherwise both record the same ends and stop the same orphans.
   */
  reconcileAfterRestart(): Promise<void> {
    this.reconciled ??= this.cluster.runWhenFree(RECONCILE_WORK, () => this.reconcile(), RECONCILE_WAIT_MS);
    return this.reconciled;
  }

  private async reconcile(): Promise<void> {
    const active = await this.sandboxes.findBy({ status: In([...ACTIVE_SANDBOX_STATUSES]) });
    const attached = new Set<string>();
    const creatingElsewhere = new Set<string>();
    for (const sandbox of active) {
      if (sandbox.providerSandboxId === null) {
        // Another live instance may be creating it right now (a rolling restart): only an old one was left behind.
        if (this.isClustered && Date.now() - sandbox.createdAt.getTime() < CREATING_GRACE_MS) {
          creatingElsewhere.add(sandbox.accountId);
          continue;
        }
        await this.markEnded(sandbox, 'error', 'creation_interrupted', 'The service stopped while this sandbox was being created');
        continue;
      }
      let state: SandboxState;
      try {
        state = await this.provider.reattach(sandbox.providerSandboxId, this.specOf(sandbox));
      } catch (error) {
        // Not knowing is not an end: the row stays running, its first use attaches again, and the orphan sweep leaves it alone.
        attached.add(sandbox.providerSandboxId);
        this.logger.warn({ sandbox_id: sandbox.id, error: describe(error) }, 'could not re-attach the sandbox after a restart; it stays running and is attached on first use');
        continue;
      }
      if (state.status === 'running') {
        attached.add(sandbox.providerSandboxId);
        this.attachedHere.add(sandbox.providerSandboxId);
        this.logger.log({ sandbox_id: sandbox.id }, 'sandbox re-attached after restart');
      } else {
        await this.markEnded(sandbox, state.status, state.exitReason);
      }
    }
    await this.terminateOrphans(attached, creatingElsewhere);
  }

  /** Several instances may share the database (PostgreSQL); the embedded PGlite allows one. */
  private get isClustered(): boolean {
    return Boolean(this.config.database.url);
  }

  /** An account with a sandbox being created elsewhere is left for a later start: its engine sandbox has no row yet. */
  private async terminateOrphans(attached: Set<string>, creatingElsewhere: Set<string>): Promise<void> {
    const accounts: { accountId: string }[] = await this.sandboxes.createQueryBuilder('sandbox').select('DISTINCT sandbox.account_id', 'accountId').getRawMany();
    for (const { accountId } of accounts.filter((account) => !creatingElsewhere.has(account.accountId))) {
      const running = await this.provider.runningSandboxIds(accountId).catch((error) => {
        this.logger.warn({ account_id: accountId, error: describe(error) }, 'could not list the engine’s sandboxes');
        return undefined;
      });
      for (const orphan of running?.filter((id) => !attached.has(id)) ?? []) {
        await this.provider.terminate(orphan).catch(() => undefined);
        this.logger.warn({ account_id: accountId, provider_sandbox_id: orphan }, 'orphaned engine sandbox terminated');
      }
    }
  }

  async create(accountId: string, userId: string, dto: CreateSandboxDto): Promise<Sandbox> {
    const config = this.normalize(dto);
    this.provider.assertNetworkSupported(networkOfConfig(config));
    const secrets = this.secrets.resolve(config.secrets);
    await this.provider.assertSecretsExist(secrets);
    const sandbox = await this.sandboxes.save(
      this.sandboxes.create({ accountId, createdBy: userId, provider: this.provider.kind, providerSandboxId: null, status: 'creating', config, limits: null, lastActivityAt: new Date(), terminatedAt: null, exitReason: null, error: null, progress: null }),
    );
    this.logger.log({ sandbox_id: sandbox.id, account_id: accountId, provider: sandbox.provider }, 'sandbox creating');
    const progress = this.progressWriter(sandbox.id);
    try {
      await this.provider.ensureApp(accountId);
      await this.provider.ensureVolume(accountId, config.volume_name);
      const handle = await this.provider.create({ ...this.specOf(sandbox), secrets, onProgress: (reported) => progress.report(reported) });
      Object.assign(sandbox, { providerSandboxId: handle.providerSandboxId, limits: handle.limits });
      this.attachedHere.add(handle.providerSandboxId);
      // Restored through the running sandbox (Modal reaches volumes only that way), before anyone is told it runs.
      if (config.init_from_s3) await this.restoreWorkspace(sandbox).catch(async (error) => {
        await this.provider.terminate(handle.providerSandboxId).catch(() => undefined);
        throw error;
      });
      await progress.close();
      await this.moveTo(sandbox, 'running');
      this.logger.log({ sandbox_id: sandbox.id, provider_sandbox_id: handle.providerSandboxId }, 'sandbox running');
      return sandbox;
    } catch (error) {
      await progress.close();
      await this.markEnded(sandbox, 'error', 'creation_failed', describe(error));
      throw error;
    }
  }

  /**
   * Logs each progress report of a create and keeps the latest on the row while it is `creating`,
   * at most one write per PROGRESS_WRITE_INTERVAL_MS; a failed write is logged, never fatal.
   */
  private progressWriter(sandboxId: string): ProgressWriter {
    return new ProgressWriter(
      (reported) => this.logger.log({ sandbox_id: sandboxId, phase: reported.phase, step: reported.step ?? null, steps: reported.steps ?? null, detail: reported.detail ?? null }, 'sandbox create progress'),
      async (progress) => {
        await this.sandboxes.update({ id: sandboxId, status: 'creating' }, { progress }).catch((error: unknown) => {
          this.logger.warn({ sandbox_id: sandboxId, error: describe(error) }, 'could not record the create progress');
        });
      },
      PROGRESS_WRITE_INTERVAL_MS,
    );
  }

  get providerKind(): string {
    return this.provider.kind;
  }

  async list(accountId: string, query: { status?: SandboxStatus; limit?: number; cursor?: string }): Promise<Page<Sandbox>> {
    const limit = query.limit ?? 20;
    const builder = this.sandboxes
      .createQueryBuilder('sandbox')
      .where('sandbox.account_id = :accountId', { accountId })
      .orderBy('sandbox.created_at', 'DESC')
      .addOrderBy('sandbox.id', 'DESC')
      .take(limit + 1);
    if (query.status) builder.andWhere('sandbox.status = :status', { status: query.status });
    if (query.cursor) {
      const { createdAt, id } = decodeCursor(query.cursor);
      builder.andWhere('(sandbox.created_at, sandbox.id) < (:createdAt, :id)', { createdAt, id });
    }
    const rows = await builder.getMany();
    const items = await Promise.all(rows.slice(0, limit).map((sandbox) => this.refresh(sandbox)));
    const last = items[items.length - 1];
    return { items, nextCursor: rows.length > limit && last ? encodeCursor(last) : null };
  }

  /** The caller's sandbox as stored; another account's is a 404. */
  async findOwned(accountId: string, id: string): Promise<Sandbox> {
    const sandbox = await this.sandboxes.findOneBy({ id, accountId });
    if (!sandbox) throw new SandboxNotFoundError();
    return sandbox;
  }

  /** The sandbox, which must be running now (status re-checked with the engine). */
  async requireRunning(stored: Sandbox): Promise<Sandbox & { providerSandboxId: string }> {
    const sandbox = assertRunning(await this.refresh(stored));
    await this.attachHere(sandbox);
    return sandbox;
  }

  /**
   * This instance's engine adapter takes over the sandbox once, when it created or re-attached it
   * itself, or on first use when another instance did (several instances share one database).
   */
  private async attachHere(sandbox: Sandbox & { providerSandboxId: string }): Promise<void> {
    if (this.attachedHere.has(sandbox.providerSandboxId)) return;
    const state = await this.provider.reattach(sandbox.providerSandboxId, this.specOf(sandbox));
    if (state.status === 'running') this.attachedHere.add(sandbox.providerSandboxId);
  }

  /** Idempotent; takes the final snapshot first unless sync is false, and stays running when it fails (unless force). */
  async terminate(stored: Sandbox, options: { sync: boolean; force: boolean }): Promise<{ sandbox: Sandbox; snapshot: SnapshotStats | null }> {
    const sandbox = await this.refresh(stored);
    if (!isActive(sandbox.status)) return { sandbox, snapshot: null };
    let snapshot: SnapshotStats | null = null;
    if (options.sync && sandbox.status === 'running') {
      try {
        snapshot = await this.snapshotWorkspace(sandbox);
      } catch (error) {
        if (!options.force) throw new FinalSyncFailedError(error);
        this.logger.warn({ sandbox_id: sandbox.id, error: describe(error) }, 'final snapshot failed; terminating anyway (force)');
      }
    }
    if (sandbox.providerSandboxId) await this.provider.terminate(sandbox.providerSandboxId);
    await this.markEnded(sandbox, 'terminated', 'terminated_by_user');
    return { sandbox, snapshot };
  }

  async exec(stored: Sandbox, dto: ExecDto): Promise<ExecResponse> {
    const sandbox = await this.requireRunning(stored);
    return this.activity.during(sandbox.id, () => this.execIn(sandbox, dto));
  }

  private async execIn(sandbox: Sandbox & { providerSandboxId: string }, dto: ExecDto): Promise<ExecResponse> {
    const startedAt = Date.now();
    const process = await this.provider.exec(sandbox.providerSandboxId, {
      argv: dto.command,
      env: dto.env,
      workdir: dto.workdir,
      timeoutSeconds: dto.timeout_seconds ?? this.config.sandbox.execDefaultTimeoutSeconds,
    });
    const cap = this.config.sandbox.execOutputLimitBytes;
    const stdout = new CappedOutput(cap);
    const stderr = new CappedOutput(cap);
    const [exit] = await Promise.all([process.wait(), stdout.collect(process.stdout), stderr.collect(process.stderr)]);
    return {
      exit_code: exit.exitCode,
      stdout: stdout.text(),
      stderr: stderr.text(),
      duration_ms: Date.now() - startedAt,
      truncated: stdout.truncated || stderr.truncated,
      timed_out: exit.timedOut,
    };
  }

  /** Files of the sandbox's volume (through the engine; Modal needs the sandbox running). */
  volumeOf(sandbox: Sandbox): VolumeAccess {
    return this.provider.volume(sandbox.accountId, sandbox.config.volume_name, sandbox.providerSandboxId ?? undefined);
  }

  async snapshotWorkspace(sandbox: Sandbox): Promise<SnapshotStats> {
    const stats = await this.snapshots.snapshot(workspaceStorageOf(sandbox), this.volumeOf(sandbox));
    this.logger.log({ sandbox_id: sandbox.id, version: stats.version }, 'workspace snapshot taken');
    return stats;
  }

  touch(id: string): Promise<unknown> {
    return this.sandboxes.update({ id }, { lastActivityAt: new Date() });
  }

  /**
   * What each instance's timer calls every SANDBOX_SWEEP_INTERVAL_SECONDS: one sweep pass per
   * period among the instances sharing the database, never two at once. False when skipped.
   */
  sweepOnce(): Promise<boolean> {
    return this.cluster.runExclusive(SWEEP_WORK, () => this.sweep(), { oncePerMs: this.config.sandbox.sweepIntervalSeconds * 1000 });
  }

  /**
   * Ends sandboxes idle for longer than their idle timeout, and those about to reach their lifetime
   * (before the engine stops them, which would leave no way to snapshot on Modal). Idle: the stored
   * last activity is older than the idle timeout, and no work is in progress on this instance.
   */
  async sweep(now = new Date()): Promise<void> {
    const running = await this.sandboxes.findBy({ status: 'running' });
    for (const listed of running) {
      if (!this.endReason(listed, now)) continue;
      // Decided again on the row as it is now: a pass takes a while (final snapshots), and work may have ended meanwhile, on any instance.
      const sandbox = await this.sandboxes.findOneBy({ id: listed.id, status: 'running' });
      const reason = sandbox && this.endReason(sandbox, now);
      if (sandbox && reason) await this.endWithFinalSnapshot(sandbox, reason).catch((error) => this.logger.warn({ sandbox_id: sandbox.id, error: describe(error) }, 'sweep could not end the sandbox'));
    }
  }

  private endReason(sandbox: Sandbox, now: Date): 'idle_timeout' | 'timeout' | undefined {
    if (isIdle(sandbox, now) && !this.activity.isBusy(sandbox.id)) return 'idle_timeout';
    return lifetimeEndsSoon(sandbox, now) ? 'timeout' : undefined;
  }

  /** Nobody waits for this end to answer, so a failed final snapshot is logged and the sandbox ends anyway. */
  private async endWithFinalSnapshot(sandbox: Sandbox, exitReason: string): Promise<void> {
    await this.activity.ending(sandbox.id, exitReason);
    await this.snapshotWorkspace(sandbox).catch((error) => this.logger.warn({ sandbox_id: sandbox.id, error: describe(error) }, 'final snapshot failed; ending the sandbox anyway'));
    // Recorded before the engine stops it: a status check in between would otherwise record the stop as the reason.
    await this.markEnded(sandbox, 'terminated', exitReason);
    if (sandbox.providerSandboxId) await this.provider.terminate(sandbox.providerSandboxId).catch((error) => this.logger.warn({ sandbox_id: sandbox.id, error: describe(error) }, 'engine stop failed'));
  }

  private async restoreWorkspace(sandbox: Sandbox): Promise<void> {
    const restored = await this.snapshots.restore(workspaceStorageOf(sandbox), this.volumeOf(sandbox), sandbox.config.snapshot_version ?? undefined);
    this.logger.log({ sandbox_id: sandbox.id, version: restored?.version ?? null, files: restored?.files ?? 0 }, restored ? 'workspace restored' : 'no snapshot yet; volume left as it is');
  }

  /** The sandbox with its status checked against the engine; one that ended there is recorded as ended. */
  async refresh(sandbox: Sandbox): Promise<Sandbox> {
    if (sandbox.status !== 'running' || !sandbox.providerSandboxId) return sandbox;
    let state: SandboxState;
    try {
      state = await this.provider.status(sandbox.providerSandboxId);
    } catch (error) {
      // A failed check says nothing about the sandbox: keep it as it is and ask again next time.
      this.logger.warn({ sandbox_id: sandbox.id, error: describe(error) }, 'sandbox status check failed');
      return sandbox;
    }
    if (state.status === 'running') return sandbox;
    return this.markEnded(sandbox, state.status, state.exitReason);
  }

  private async markEnded(sandbox: Sandbox, status: EndedSandboxStatus, exitReason: string, error: string | null = null): Promise<Sandbox> {
    Object.assign(sandbox, { exitReason, error, terminatedAt: new Date() });
    await this.moveTo(sandbox, status);
    this.logger.log({ sandbox_id: sandbox.id, status: sandbox.status, exit_reason: sandbox.exitReason }, 'sandbox ended');
    return sandbox;
  }

  /**
   * The one writer of a sandbox's status. The update only applies while the stored status may still
   * make the move, so when someone else ended the sandbox first (the sweep, a DELETE) their record stays.
   */
  private async moveTo(sandbox: Sandbox, status: SandboxStatus): Promise<Sandbox> {
    assertTransition(sandbox.status, status);
    const { providerSandboxId, limits, exitReason, error, terminatedAt } = sandbox;
    // Progress is only kept while creating, and no status leads back there.
    const result = await this.sandboxes.update({ id: sandbox.id, status: In(statusesLeadingTo(status)) }, { status, providerSandboxId, limits, exitReason, error, terminatedAt, progress: null });
    if (result.affected === 0) return Object.assign(sandbox, await this.sandboxes.findOneByOrFail({ id: sandbox.id }));
    sandbox.status = status;
    sandbox.progress = null;
    return sandbox;
  }

  private normalize(dto: CreateSandboxDto): SandboxConfig {
    const { defaultTimeoutSeconds, maxTimeoutSeconds } = this.config.sandbox;
    if (dto.timeout_seconds !== undefined && dto.timeout_seconds > maxTimeoutSeconds) throw new SandboxFieldError('timeout_seconds', `must not exceed ${maxTimeoutSeconds}`);
    if (dto.idle_timeout_seconds !== undefined && dto.idle_timeout_seconds > maxTimeoutSeconds) throw new SandboxFieldError('idle_timeout_seconds', `must not exceed ${maxTimeoutSeconds}`);
    parseDockerfileCommands(dto.dockerfile_commands ?? []);
    if (dto.s3_bucket_name !== undefined && !this.config.storage.allowedBuckets.includes(dto.s3_bucket_name)) {
      throw new SandboxFieldError('s3_bucket_name', 'is not an allowed bucket (STORAGE_ALLOWED_BUCKETS)');
    }
    const keyPrefix = dto.s3_key_prefix ?? null;
    try {
      if (keyPrefix !== null) assertSafeKeyPrefix(keyPrefix);
    } catch (error) {
      if (error instanceof InvalidInputError) throw new SandboxFieldError('s3_key_prefix', error.message);
      throw error;
    }
    if (dto.snapshot_version !== undefined && !dto.init_from_s3) throw new SandboxFieldError('snapshot_version', 'requires init_from_s3: true');
    const mountPath = dto.volume_mount_path ?? DEFAULT_MOUNT_PATH;
    return {
      image_base: dto.image_base ?? null,
      dockerfile_commands: dto.dockerfile_commands ?? [],
      volume_name: dto.volume_name ?? DEFAULT_VOLUME_NAME,
      volume_mount_path: mountPath,
      workdir: dto.workdir ?? mountPath,
      env: dto.env ?? {},
      secrets: dto.secrets ?? [],
      ...networkOfRequest(dto),
      timeout_seconds: dto.timeout_seconds ?? defaultTimeoutSeconds,
      idle_timeout_seconds: dto.idle_timeout_seconds ?? null,
      s3_bucket_name: dto.s3_bucket_name ?? null,
      s3_key_prefix: keyPrefix,
      init_from_s3: dto.init_from_s3 ?? false,
      snapshot_version: dto.snapshot_version ?? null,
    };
  }

  private bucketMountOf(sandbox: Sandbox): SandboxSpec['bucketMount'] {
    const mount = this.snapshots.bucketMountOf(workspaceStorageOf(sandbox));
    return mount && { ...mount, readOnly: false };
  }

  private specOf(sandbox: Sandbox): SandboxSpec {
    const { config } = sandbox;
    return {
      sandboxId: sandbox.id,
      accountId: sandbox.accountId,
      imageBase: config.image_base ?? undefined,
      dockerfileCommands: config.dockerfile_commands,
      volumeName: config.volume_name,
      volumeMountPath: config.volume_mount_path,
      workdir: config.workdir,
      env: config.env,
      secrets: [],
      network: networkOfConfig(config),
      timeoutSeconds: config.timeout_seconds,
      idleTimeoutSeconds: config.idle_timeout_seconds ?? undefined,
      bucketMount: this.bucketMountOf(sandbox),
    };
  }
}

/** The latest progress of one create, written at most once per interval; nothing is written once closed. */
class ProgressWriter {
  private latest?: SandboxProgress;
  private timer?: NodeJS.Timeout;
  private lastWriteAt = 0;
  private writing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly log: (progress: CreateProgress) => void,
    private readonly write: (progress: SandboxProgress) => Promise<void>,
    private readonly intervalMs: number,
  ) {}

  report(progress: CreateProgress): void {
    if (this.closed) return;
    this.log(progress);
    this.latest = { phase: progress.phase, step: progress.step ?? null, steps: progress.steps ?? null, detail: progress.detail ?? null };
    this.timer ??= setTimeout(() => this.flush(), Math.max(0, this.lastWriteAt + this.intervalMs - Date.now()));
  }

  /** Stops writing and waits for the write under way. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.writing;
  }

  private flush(): void {
    this.timer = undefined;
    const progress = this.latest;
    this.latest = undefined;
    if (!progress || this.closed) return;
    this.lastWriteAt = Date.now();
    this.writing = this.writing.then(() => this.write(progress));
  }
}

function assertRunning(sandbox: Sandbox): Sandbox & { providerSandboxId: string } {
  if (sandbox.status !== 'running' || !sandbox.providerSandboxId) throw new SandboxNotRunningError(sandbox.status);
  return sandbox as Sandbox & { providerSandboxId: string };
}

function isIdle(sandbox: Sandbox, now: Date): boolean {
  const idle = sandbox.config.idle_timeout_seconds;
  return idle !== null && now.getTime() - sandbox.lastActivityAt.getTime() >= idle * 1000;
}

/** Only lifetimes long enough for the sweep to act before the engine does. */
function lifetimeEndsSoon(sandbox: Sandbox, now: Date): boolean {
  const lifetimeMs = sandbox.config.timeout_seconds * 1000;
  return lifetimeMs > 2 * LIFETIME_LEAD_MS && sandbox.createdAt.getTime() + lifetimeMs - now.getTime() <= LIFETIME_LEAD_MS;
}

function encodeCursor(sandbox: Sandbox): string {
  return Buffer.from(JSON.stringify([sandbox.createdAt.toISOString(), sandbox.id])).toString('base64url');
}

function decodeCursor(cursor: string): { createdAt: string; id: string } {
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [string, string];
    if (Number.isNaN(Date.parse(createdAt)) || !/^[0-9a-f-]{36}$/.test(id)) throw new Error('bad cursor');
    return { createdAt, id };
  } catch {
    throw new SandboxFieldError('cursor', 'is not a cursor returned by this API');
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
