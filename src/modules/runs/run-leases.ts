import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { InstanceIdentity } from '../../common/instance-identity';
import { AppConfig } from '../../config/app-config';
import { Run } from './run.entity';

/**
 * Ownership of running runs among instances sharing the database: the owner follows the run's agent
 * and renews its lease; a run whose lease ran out (its owner died or stalled) is taken over by
 * another instance, which follows it again from its recorded events. Times are the database's, so
 * instances' clocks do not matter.
 */
@Injectable()
export class RunLeases {
  constructor(
    @InjectRepository(Run) private readonly runs: Repository<Run>,
    private readonly config: AppConfig,
    private readonly instance: InstanceIdentity,
  ) {}

  get ownerId(): string {
    return this.instance.id;
  }

  get ttlSeconds(): number {
    return this.config.claude.leaseSeconds;
  }

  /** The owner fields of a run this instance starts (with the move to running, in one write). */
  newLease(): { ownerId: string; leaseExpiresAt: Date } {
    return { ownerId: this.ownerId, leaseExpiresAt: new Date(Date.now() + this.ttlSeconds * 1000) };
  }

  /**
   * Takes the run when it is free, already this instance's, or its lease ran out; on the embedded
   * PGlite, which one instance only may open, always (its previous owner was this service before a restart).
   */
  async acquire(runId: string): Promise<boolean> {
    const [, affected] = (await this.runs.query(
      `UPDATE "run" SET "owner_id" = $2, "lease_expires_at" = now() + make_interval(secs => $3)
        WHERE "id" = $1 AND "status" = 'running' AND ($4 OR "owner_id" IS NULL OR "owner_id" = $2 OR "lease_expires_at" < now())`,
      [runId, this.ownerId, this.ttlSeconds, this.singleInstance],
    )) as [unknown, number];
    return affected === 1;
  }

  private get singleInstance(): boolean {
    return !this.config.database.url;
  }

  /** Extends the leases of these runs; returns those this instance no longer owns (taken over, or ended). */
  async renew(runIds: string[]): Promise<string[]> {
    if (runIds.length === 0) return [];
    const [rows] = (await this.runs.query(
      `UPDATE "run" SET "lease_expires_at" = now() + make_interval(secs => $3)
        WHERE "id" = ANY($1::uuid[]) AND "owner_id" = $2 AND "status" = 'running' RETURNING "id"`,
      [runIds, this.ownerId, this.ttlSeconds],
    )) as [Array<{ id: string }>, number];
    const kept = new Set(rows.map((row) => row.id));
    return runIds.filter((id) => !kept.has(id));
  }

  /** Lets other instances take these runs over at once (this one stops following them). */
  async release(runIds: string[]): Promise<void> {
    if (runIds.length === 0) return;
    await this.runs.query(`UPDATE "run" SET "lease_expires_at" = now() WHERE "id" = ANY($1::uuid[]) AND "owner_id" = $2`, [runIds, this.ownerId]);
  }

  /** Running runs nobody follows: no owner, an expired lease, or this instance's own from before a restart. */
  async unfollowed(): Promise<Run[]> {
    return this.runs
      .createQueryBuilder('run')
      .where(`run.status = 'running'`)
      .andWhere('(:any OR run.owner_id IS NULL OR run.owner_id = :me OR run.lease_expires_at < now())', { me: this.ownerId, any: this.singleInstance })
      .getMany();
  }

  /** Asks the owner, through the database, to record the run's end as cancelled. */
  async requestCancel(runId: string): Promise<void> {
    await this.runs.update({ id: runId }, { cancelRequestedAt: new Date() });
  }

  async cancelRequested(runId: string): Promise<boolean> {
    const run = await this.runs.findOne({ select: { id: true, cancelRequestedAt: true }, where: { id: runId } });
    return run?.cancelRequestedAt != null;
  }
}
