import { Injectable, Logger } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { DomainError } from '../../common/domain-error';
import type { VolumeAccess, VolumeEntry } from '../../integrations/sandbox/sandbox-provider';
import type { Sandbox } from '../sandboxes/sandbox.entity';
import { SandboxesService } from '../sandboxes/sandboxes.service';
import { CLAUDE_PROJECTS_DIR, isSessionId, projectDirOf, sessionIdOfTranscript, transcriptPath } from './claude-transcripts';
import { Run } from './run.entity';
import { RESUMABLE_RUN_STATUSES } from './run-state';

/** Transcripts of one folder taken into account, most recently modified first; the rest is ignored. */
export const MAX_TRANSCRIPTS = 1000;
/** Latest runs of the account looked at when the working directory's folder holds none of their conversations. */
export const MAX_RUNS_ELSEWHERE = 20;

/** The state on the volume is the tenant's: these only mean it holds no conversation we can continue. */
const UNUSABLE_STATE_KINDS: ReadonlySet<string> = new Set(['not_found', 'invalid', 'conflict']);

/**
 * Which conversation a run continues: the one the sandbox's workspace actually holds, so that it
 * follows the workspace into a snapshot and any volume restored from it, and never names a session
 * whose transcript is not on the volume (the CLI would fail the run). The volume says which
 * conversations exist; the account's runs say which is the latest (a restore rewrites the files, so
 * their times say nothing) and that a transcript is one of ours.
 */
@Injectable()
export class WorkspaceConversations {
  private readonly logger = new Logger(WorkspaceConversations.name);

  constructor(
    @InjectRepository(Run) private readonly runs: Repository<Run>,
    private readonly sandboxes: SandboxesService,
  ) {}

  /**
   * The latest of the account's conversations whose transcript is in the folder of the sandbox's
   * working directory; else the latest one anywhere on the volume (the CLI finds a session of
   * another folder of the same state); else null, a new conversation.
   */
  async toContinue(sandbox: Sandbox): Promise<string | null> {
    const volume = this.sandboxes.volumeOf(sandbox);
    const projectDir = projectDirOf(sandbox.config.workdir);
    const here = projectDir === null ? [] : await this.transcriptsIn(volume, projectDir, sandbox);
    return (await this.latestOf(sandbox.accountId, here)) ?? (await this.latestElsewhere(volume, sandbox));
  }

  /** Session ids of the folder's transcripts, most recently modified first, at most MAX_TRANSCRIPTS. */
  private async transcriptsIn(volume: VolumeAccess, projectDir: string, sandbox: Sandbox): Promise<string[]> {
    const entries = await this.listState(volume, projectDir, sandbox);
    return entries
      .map((entry) => ({ sessionId: sessionIdOfTranscript(entry), modifiedAt: entry.modifiedAt.getTime() }))
      .filter((transcript): transcript is { sessionId: string; modifiedAt: number } => transcript.sessionId !== null)
      .sort((a, b) => b.modifiedAt - a.modifiedAt)
      .slice(0, MAX_TRANSCRIPTS)
      .map((transcript) => transcript.sessionId);
  }

  /** Of these sessions, the one an ended run of the account used last; transcripts no run of ours wrote are never continued. */
  private async latestOf(accountId: string, sessionIds: string[]): Promise<string | null> {
    if (sessionIds.length === 0) return null;
    const row = await this.runs
      .createQueryBuilder('run')
      .select('run.session_id', 'sessionId')
      .where('run.account_id = :accountId', { accountId })
      .andWhere('run.session_id IN (:...sessionIds)', { sessionIds })
      .andWhere('run.status IN (:...resumable)', { resumable: RESUMABLE_RUN_STATUSES })
      .orderBy('run.created_at', 'DESC')
      .limit(1)
      .getRawOne<{ sessionId: string }>();
    return row?.sessionId ?? null;
  }

  /** The account's latest conversation whose transcript is in another folder of this volume, checked file by file. */
  private async latestElsewhere(volume: VolumeAccess, sandbox: Sandbox): Promise<string | null> {
    const listed = await this.listState(volume, CLAUDE_PROJECTS_DIR, sandbox);
    const folders = new Set(listed.filter((entry) => entry.type === 'directory').map((entry) => `${CLAUDE_PROJECTS_DIR}/${entry.name}`));
    if (folders.size === 0) return null;
    const recent: { sessionId: string; workdir: string | null }[] = await this.runs
      .createQueryBuilder('run')
      .innerJoin('run.sandbox', 'sandbox')
      .select('run.session_id', 'sessionId')
      .addSelect("sandbox.config ->> 'workdir'", 'workdir')
      .where('run.account_id = :accountId', { accountId: sandbox.accountId })
      .andWhere('run.session_id IS NOT NULL')
      .andWhere('run.status IN (:...resumable)', { resumable: RESUMABLE_RUN_STATUSES })
      .orderBy('run.created_at', 'DESC')
      .limit(MAX_RUNS_ELSEWHERE)
      .getRawMany();
    const checked = new Set<string>();
    for (const { sessionId, workdir } of recent) {
      const projectDir = workdir === null ? null : projectDirOf(workdir);
      if (projectDir === null || !folders.has(projectDir) || !isSessionId(sessionId)) continue;
      const path = transcriptPath(projectDir, sessionId);
      if (checked.has(path)) continue;
      checked.add(path);
      const entry = await this.statState(volume, path, sandbox);
      if (entry && sessionIdOfTranscript(entry) === sessionId) return sessionId;
    }
    return null;
  }

  private listState(volume: VolumeAccess, dir: string, sandbox: Sandbox): Promise<VolumeEntry[]> {
    return volume.list(dir).catch((error: unknown) => this.unusable(error, dir, sandbox, []));
  }

  private statState(volume: VolumeAccess, path: string, sandbox: Sandbox): Promise<VolumeEntry | null> {
    return volume.stat(path).catch((error: unknown) => this.unusable(error, path, sandbox, null));
  }

  /**
   * A missing folder, a link leaving the volume, a file where a folder belongs: the workspace holds
   * no conversation there. Anything else (the engine failing) fails the run's start as it is.
   */
  private unusable<T>(error: unknown, path: string, sandbox: Sandbox, nothing: T): T {
    if (!(error instanceof DomainError) || !UNUSABLE_STATE_KINDS.has(error.kind)) throw error;
    if (error.kind !== 'not_found') this.logger.warn({ sandbox_id: sandbox.id, path, error: error.message }, 'Claude state on the volume is unusable there; not continuing a conversation from it');
    return nothing;
  }
}
