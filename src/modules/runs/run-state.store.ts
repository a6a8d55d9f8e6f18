import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { In, Repository } from 'typeorm';
import { Run } from './run.entity';
import { canMoveRun, IllegalRunTransitionError, RunStatus, statusesBefore } from './run-state';

type RunFields = Partial<Omit<Run, 'id' | 'status'>>;

/** The only writer of a run's status: every move is checked here and again by the UPDATE's predicate. */
@Injectable()
export class RunStateStore {
  constructor(@InjectRepository(Run) private readonly runs: Repository<Run>) {}

  /**
   * Moves the run to `to` with the given fields, in the database and then in memory. Refused when the
   * run (as known here, or as stored, e.g. ended by another writer meanwhile) may not move there.
   */
  async move(run: Run, to: RunStatus, fields: RunFields = {}): Promise<void> {
    if (!canMoveRun(run.status, to)) throw new IllegalRunTransitionError(run.id, run.status, to);
    const { affected } = await this.runs.update({ id: run.id, status: In(statusesBefore(to)) }, { ...fields, status: to } as never);
    if (affected === 0) throw new IllegalRunTransitionError(run.id, run.status, to);
    Object.assign(run, fields, { status: to });
  }
}
