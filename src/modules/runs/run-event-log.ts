import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { concat, defer, from, mergeMap, Observable, ReplaySubject, Subject, takeWhile } from 'rxjs';
import { MoreThan, Repository } from 'typeorm';
import { RunEvent, RunEventType } from './run-event.entity';

export interface StoredEvent {
  seq: number;
  type: RunEventType;
  data: unknown;
}

/**
 * Persists run events with their sequence number, then publishes them live. Subscribers get the
 * persisted events after their last seen seq, then the live ones, deduplicated by seq: no gap, no
 * duplicate, whenever they (re)connect.
 */
@Injectable()
export class RunEventLog {
  private readonly live = new Map<string, Subject<StoredEvent>>();
  private readonly writes = new Map<string, { nextSeq: number; tail: Promise<void> }>();

  constructor(@InjectRepository(RunEvent) private readonly events: Repository<RunEvent>) {}

  /** Starts the in-memory channel of a run that is about to produce events. */
  open(runId: string, nextSeq = 1): void {
    this.live.set(runId, new Subject<StoredEvent>());
    this.writes.set(runId, { nextSeq, tail: Promise.resolve() });
  }

  /** Appends an event; writes are serialized per run so sequence numbers follow production order. */
  append(runId: string, type: RunEventType, data: unknown): Promise<void> {
    const state = this.writes.get(runId);
    if (!state) throw new Error(`run ${runId} has no open event log`);
    const event: StoredEvent = { seq: state.nextSeq++, type, data };
    const written = state.tail.then(async () => {
      await this.events.insert({ runId, seq: event.seq, type, data: data as object });
      this.live.get(runId)?.next(event);
    });
    // One failed insert must not poison every later event of the run (and its final `done`).
    state.tail = written.catch(() => undefined);
    return written;
  }

  /** Closes the channel after the final event has been written. */
  async close(runId: string): Promise<void> {
    await this.writes.get(runId)?.tail;
    this.live.get(runId)?.complete();
    this.live.delete(runId);
    this.writes.delete(runId);
  }

  /** Replays events after `afterSeq`, then follows the run live until its `done` event. */
  follow(runId: string, afterSeq: number): Observable<StoredEvent> {
    return defer(() => {
      const channel = this.live.get(runId);
      if (!channel) return this.stored(runId, afterSeq);
      const buffered = new ReplaySubject<StoredEvent>();
      const subscription = channel.subscribe(buffered);
      let lastSeq = afterSeq;
      const replay = this.stored(runId, afterSeq);
      return concat(replay, buffered).pipe(
        mergeMap((event) => {
          if (event.seq <= lastSeq) return [];
          lastSeq = event.seq;
          return [event];
        }),
        takeWhile((event) => event.type !== 'done', true),
        (source) =>
          new Observable<StoredEvent>((subscriber) => {
            const inner = source.subscribe(subscriber);
            return () => {
              inner.unsubscribe();
              subscription.unsubscribe();
            };
          }),
      );
    });
  }

  private stored(runId: string, afterSeq: number): Observable<StoredEvent> {
    return from(this.events.find({ where: { runId, seq: MoreThan(afterSeq) }, order: { seq: 'ASC' } })).pipe(
      mergeMap((rows) => rows.map((row) => ({ seq: row.seq, type: row.type, data: row.data }))),
    );
  }

  async lastSeq(runId: string): Promise<number> {
    const row = await this.events.findOne({ where: { runId }, order: { seq: 'DESC' } });
    return row?.seq ?? 0;
  }
}
