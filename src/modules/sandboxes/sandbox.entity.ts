import { Column, CreateDateColumn, Entity, Index, JoinColumn, ManyToOne, PrimaryGeneratedColumn, type Relation } from 'typeorm';
import { Account } from '../users/account.entity';
import type { CreateProgressPhase, EnforcedLimits, SandboxNetworkMode } from '../../integrations/sandbox/sandbox-provider';
import type { SandboxStatus } from './sandbox.state-machine';

/** What the user asked for, as stored: secret names only, never values. */
export interface SandboxConfig {
  image_base: string | null;
  dockerfile_commands: string[];
  volume_name: string;
  volume_mount_path: string;
  workdir: string;
  env: Record<string, string>;
  secrets: string[];
  /** `open` only in rows written before the allowlist existed; it means `internet`. */
  network: SandboxNetworkMode | 'open';
  /** Absent in rows written before the allowlist existed (= []). */
  cidr_allowlist?: string[];
  allowed_domains?: string[];
  timeout_seconds: number;
  idle_timeout_seconds: number | null;
  s3_bucket_name: string | null;
  /**
   * null: the volume's own snapshot location (rows written since snapshots are kept per volume).
   * '' in older rows means what it meant then: the account's location shared by all its volumes.
   */
  s3_key_prefix: string | null;
  init_from_s3: boolean;
  snapshot_version: number | null;
}

/** Where a create stands, as stored and answered (snake_case like the config). */
export interface SandboxProgress {
  phase: CreateProgressPhase;
  step: number | null;
  steps: number | null;
  detail: string | null;
}

@Entity({ name: 'sandbox' })
@Index('ix_sandbox_account_id_created_at', ['accountId', 'createdAt'])
@Index('ix_sandbox_status', ['status'])
export class Sandbox {
  @PrimaryGeneratedColumn('uuid', { primaryKeyConstraintName: 'pk_sandbox' })
  id: string;

  @Column({ type: 'uuid' })
  accountId: string;

  @ManyToOne(() => Account, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'account_id', foreignKeyConstraintName: 'fk_sandbox_account' })
  account?: Relation<Account>;

  @Column({ type: 'uuid' })
  createdBy: string;

  @Column({ type: 'varchar', length: 16 })
  provider: 'local' | 'modal';

  @Column({ type: 'varchar', length: 128, nullable: true })
  providerSandboxId: string | null;

  /** Changed only through ./sandbox.state-machine.ts. */
  @Column({ type: 'varchar', length: 16 })
  status: SandboxStatus;

  @Column({ type: 'jsonb' })
  config: SandboxConfig;

  @Column({ type: 'jsonb', nullable: true })
  limits: EnforcedLimits | null;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;

  @Column({ type: 'timestamptz', nullable: true })
  terminatedAt: Date | null;

  @Column({ type: 'timestamptz' })
  lastActivityAt: Date;

  @Column({ type: 'varchar', length: 64, nullable: true })
  exitReason: string | null;

  @Column({ type: 'text', nullable: true })
  error: string | null;

  /** The latest create progress the engine reported, while `creating`; null otherwise. */
  @Column({ type: 'jsonb', nullable: true })
  progress: SandboxProgress | null;
}
