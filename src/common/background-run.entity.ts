import { Column, Entity, PrimaryColumn, type ValueTransformer } from 'typeorm';

/** bigint arrives from the drivers as a string; counters stay far below 2^53. */
const bigintAsNumber: ValueTransformer = { to: (value: number) => value, from: (value: string | number) => Number(value) };

/**
 * The last pass of a piece of background work (the sandbox sweep, the boot-time reconciliation),
 * whichever instance of the service ran it: written by `ClusterLock` under the work's lock, so
 * instances sharing the database run a periodic pass once per period between them.
 */
@Entity({ name: 'background_run' })
export class BackgroundRun {
  @PrimaryColumn({ type: 'varchar', length: 100, primaryKeyConstraintName: 'pk_background_run' })
  name: string;

  /** Passes run so far, by all instances. */
  @Column({ type: 'bigint', default: 0, transformer: bigintAsNumber })
  passes: number;

  /** The instance that ran the last pass. */
  @Column({ type: 'varchar', length: 200 })
  instance: string;

  /** Database time (one clock for all instances). */
  @Column({ type: 'timestamptz' })
  lastStartedAt: Date;

  /** null while the last pass runs, or when it failed. */
  @Column({ type: 'timestamptz', nullable: true })
  lastFinishedAt: Date | null;
}
