import { Column, CreateDateColumn, Entity, JoinColumn, ManyToOne, PrimaryColumn, type Relation } from 'typeorm';
import { CLAUDE_MESSAGE_TYPES } from '../../integrations/claude/claude.events';
import type { LogStream } from '../../integrations/claude/claude-run-log';
import { Run } from './run.entity';

/** Claude's own messages, then what the service adds: other output, stderr, errors and the final done. */
export const RUN_EVENT_TYPES = [...CLAUDE_MESSAGE_TYPES, 'output', 'stderr', 'error', 'done'] as const;
export type RunEventType = (typeof RUN_EVENT_TYPES)[number];

/** Every event of a run, in order; the stream's replay reads from here. */
@Entity({ name: 'run_event' })
export class RunEvent {
  @PrimaryColumn({ type: 'uuid', primaryKeyConstraintName: 'pk_run_event' })
  runId: string;

  @PrimaryColumn({ type: 'integer', primaryKeyConstraintName: 'pk_run_event' })
  seq: number;

  @ManyToOne(() => Run, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'run_id', foreignKeyConstraintName: 'fk_run_event_run' })
  run?: Relation<Run>;

  @Column({ type: 'varchar', length: 32 })
  type: RunEventType;

  /** `json`, not `jsonb`: a replay must give back each event exactly as it was streamed live. */
  @Column({ type: 'json' })
  data: unknown;

  /** The agent's log the event was read from (`stdout`/`stderr`); null for what the service adds. */
  @Column({ type: 'varchar', length: 6, nullable: true })
  logStream: LogStream | null;

  /** Where its line ends in that log: after a restart, reading resumes at the last one recorded. */
  @Column({ type: 'bigint', nullable: true, transformer: { to: (value: number | null) => value, from: (value: string | null) => (value === null ? null : Number(value)) } })
  logOffset: number | null;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;
}
