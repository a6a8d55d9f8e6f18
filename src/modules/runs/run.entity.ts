import { Column, CreateDateColumn, Entity, Index, JoinColumn, ManyToOne, PrimaryGeneratedColumn, type Relation } from 'typeorm';
import { Sandbox } from '../sandboxes/sandbox.entity';
import { ACTIVE_RUN_STATUSES, type RunStatus, sqlStatusList } from './run-state';

export interface RunOptions {
  resume: boolean;
  model: string | null;
  max_turns: number | null;
  allowed_tools: string[];
  disallowed_tools: string[];
  append_system_prompt: string | null;
  include_partial_messages: boolean;
  timeout_seconds: number;
  resumed_session_id: string | null;
}

@Entity({ name: 'run' })
@Index('ix_run_sandbox_id_created_at', ['sandboxId', 'createdAt'])
@Index('ix_run_account_id_created_at', ['accountId', 'createdAt'])
// At most one active run per sandbox, enforced by the database so concurrent requests cannot race.
@Index('ix_run_lease_expires_at_active', ['leaseExpiresAt'], { where: `"status" = 'running'` })
@Index('uq_run_active_per_sandbox', ['sandboxId'], { unique: true, where: `"status" IN (${sqlStatusList(ACTIVE_RUN_STATUSES)})` })
export class Run {
  @PrimaryGeneratedColumn('uuid', { primaryKeyConstraintName: 'pk_run' })
  id: string;

  @Column({ type: 'uuid' })
  sandboxId: string;

  @ManyToOne(() => Sandbox, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'sandbox_id', foreignKeyConstraintName: 'fk_run_sandbox' })
  sandbox?: Relation<Sandbox>;

  @Column({ type: 'uuid' })
  accountId: string;

  @Column({ type: 'uuid' })
  createdBy: string;

  @Column({ type: 'text' })
  prompt: string;

  @Column({ type: 'jsonb' })
  options: RunOptions;

  @Column({ type: 'varchar', length: 16 })
  status: RunStatus;

  @Column({ type: 'varchar', length: 128, nullable: true })
  sessionId: string | null;

  @Column({ type: 'integer', nullable: true })
  exitCode: number | null;

  @Column({ type: 'text', nullable: true })
  result: string | null;

  @Column({ type: 'double precision', nullable: true })
  totalCostUsd: number | null;

  @Column({ type: 'jsonb', nullable: true })
  usage: Record<string, unknown> | null;

  @Column({ type: 'integer', nullable: true })
  numTurns: number | null;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;

  @Column({ type: 'timestamptz', nullable: true })
  startedAt: Date | null;

  @Column({ type: 'timestamptz', nullable: true })
  finishedAt: Date | null;

  @Column({ type: 'text', nullable: true })
  error: string | null;

  /** The instance that follows the active run (see RunLeases); null before it starts and after it ends. */
  @Column({ type: 'varchar', length: 128, nullable: true })
  ownerId: string | null;

  /** Until when the owner's lease runs; past it, any instance takes the run over. */
  @Column({ type: 'timestamptz', nullable: true })
  leaseExpiresAt: Date | null;

  /** Set by a cancel that reached an instance other than the owner: the owner records the end as cancelled. */
  @Column({ type: 'timestamptz', nullable: true })
  cancelRequestedAt: Date | null;
}
