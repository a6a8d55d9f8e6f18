import { Column, CreateDateColumn, Entity, Index, JoinColumn, OneToOne, PrimaryColumn, type Relation, type ValueTransformer } from 'typeorm';
import { Run } from './run.entity';

/** bigint arrives from the drivers as a string; counters stay far below 2^53. */
const bigintAsNumber: ValueTransformer = { to: (value: number) => value, from: (value: string | number) => Number(value) };

/**
 * The model gateway credential of a run. Only the token's hash is stored, in the database (not in
 * memory) so that the gateway of any API instance sharing the database can validate it.
 */
@Entity({ name: 'model_gateway_token' })
@Index('uq_model_gateway_token_token_hash', ['tokenHash'], { unique: true })
export class ModelGatewayToken {
  @PrimaryColumn({ type: 'uuid', primaryKeyConstraintName: 'pk_model_gateway_token' })
  runId: string;

  @OneToOne(() => Run, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'run_id', foreignKeyConstraintName: 'fk_model_gateway_token_run' })
  run?: Relation<Run>;

  /** sha256 of the token, hex. */
  @Column({ type: 'char', length: 64 })
  tokenHash: string;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;

  @Column({ type: 'timestamptz', nullable: true })
  revokedAt: Date | null;

  @Column({ type: 'bigint', default: 0, transformer: bigintAsNumber })
  requests: number;

  @Column({ type: 'bigint', default: 0, transformer: bigintAsNumber })
  inputTokens: number;

  @Column({ type: 'bigint', default: 0, transformer: bigintAsNumber })
  outputTokens: number;

  @Column({ type: 'bigint', default: 0, transformer: bigintAsNumber })
  cacheCreationInputTokens: number;

  @Column({ type: 'bigint', default: 0, transformer: bigintAsNumber })
  cacheReadInputTokens: number;
}
