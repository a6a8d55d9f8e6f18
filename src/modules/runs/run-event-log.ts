import { setTimeout as sleep } from 'node:timers/promises';
import { Injectable, Logger } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { concat, defer, from, mergeMap, Observable, ReplaySubject, Subject, type Subscription, takeWhile } from 'rxjs';
import { MoreThan, Repository } from 'typeorm';
import type { ResumePoint } from '../../integrations/claude/claude.agent';
import type { LogPosition } from '../../integrations/claude/claude.events';
import type { LogOffsets } from '../../integrations/claude/claude-run-log';
import { RunEvent, RunEventType } from './run-event.entity';
import { RunEventFeed } from './run-event-feed';

const STDERR_TAIL_LINES = 20;
/** A follower of a run written elsewhere reads its rows again this often even without a notification. */
const SAFETY_POLL_MS = 2_000;
const READ_BATCH = 1_000;
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2_000;
const UNIQUE_VIOLATION = '23505';
const FOREIGN_KEY_VIOLATION = '23503';

type EventRow = Omit<RunEvent, 'run' | 'createdAt' | 'data'> & { data: object };

interface SharedTail {
  events: Subject<StoredEvent>;
  /** Settles once the reader knows where it starts. */
  ready: Promise<void>;
  watchers: number;
  stop(): void;
}

interface WriteQueue {
  nextSeq: number;
  /** Settles when every event appended so far is written (or given up). */
  tail: Promise<void>;
  pending: number;
  abandoned: boolean;
}

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
  private readonly writes = new Map<string, WriteQueue>();
  /** Readers of runs written by other instances, one per run (see tailOf). */
  private readonly tails = new Map<string, SharedTail>();

  private readonly logger = new Logger(RunEventLog.name);

  constructor(
    @InjectRepository(RunEvent) private readonly events: Repository<RunEvent>,
    private readonly feed: RunEventFeed,
  ) {}

  /** Starts the in-memory channel of a run that is about to produce events. */
  open(runId: string, nextSeq = 1): void {
    this.live.set(runId, new Subject<StoredEvent>());
    this.writes.set(runId, { nextSeq, tail: Promise.resolve(), pending: 0, abandoned: false });
  }

  /**
   * Appends an event; writes are serialized per run so sequence numbers follow production order.
   * `position` says where the event's line ends in the agent's log, recorded with it.
   */
  append(runId: string, type: RunEventType, data: unknown, position?: LogPosition): Promise<void> {
    const state = this.writes.get(runId);
    if (!state) throw new Error(`run ${runId} has no open event log`);
    const event: StoredEvent = { seq: state.nextSeq++, type, data };
    const row: EventRow = { runId, seq: event.seq, type, data: data as object, logStream: position?.stream ?? null, logOffset: position?.offset ?? null };
    state.pending++;
    const written = state.tail
      .then(async () => {
        await this.insertUntilWritten(row, state);
        this.live.get(runId)?.next(event);
        this.feed.signal(runId);
      })
      .finally(() => state.pending--);
    // One failed insert must not poison every later event of the run (and its final `done`).
    state.tail = written.catch(() => undefined);
    return written;
  }

  /**
   * A failed insert (the database restarting, a full disk) waits and tries again, in order, until
   * it is written or the run's log is abandoned: nothing is skipped, so seqs never have a gap. A
   * row already there (the insert succeeded but its answer was lost) counts as written.
   */
  private async insertUntilWritten(row: EventRow, queue: WriteQueue): Promise<void> {
    for (let delay = RETRY_FIRST_MS; ; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
      // Once an event is given up, no later one is written: that would leave a gap, and a resume point past it.
      if (queue.abandoned) throw new Error(`the event log of run ${row.runId} was abandoned before event ${row.seq} was written`);
      try {
        await this.events.insert(row);
        return;
      } catch (error) {
        if ((error as { code?: string }).code === UNIQUE_VIOLATION) return;
        if ((error as { code?: string }).code === FOREIGN_KEY_VIOLATION || queue.abandoned) throw error;
        this.logger.warn({ run_id: row.runId, seq: row.seq, err: error }, `could not record a run event; retrying in ${delay} ms`);
        await sleep(delay);
      }
    }
  }

  /**
   * Stops retrying the run's unwritten events (the service stops): they stay in the agent's log,
   * where the next service reads them again from the last recorded position.
   */
  abandon(runId: string): void {
    const state = this.writes.get(runId);
    if (state) state.abandoned = true;
  }

  /** Events waiting to be written, over every run: what a database outage holds in memory. */
  get pendingWrites(): number {
    let pending = 0;
    for (const state of this.writes.values()) pending += state.pending;
    return pending;
  }

  /** Where the agent's logs were read up to, and what of its output must be known to end the run. */
  async resumePoint(runId: string): Promise<ResumePoint> {
    const offsets: LogOffsets = { stdout: 0, stderr: 0 };
    for (const stream of ['stdout', 'stderr'] as const) {
      const last = await this.events.findOne({ where: { runId, logStream: stream }, order: { seq: 'DESC' } });
      offsets[stream] = last?.logOffset ?? 0;
    }
    const result = await this.events.findOne({ where: { runId, type: 'result' }, order: { seq: 'DESC' } });
    const stderr = await this.events.find({ where: { runId, type: 'stderr' }, order: { seq: 'DESC' }, take: STDERR_TAIL_LINES });
    return {
      offsets,
      result: (result?.data as Record<string, unknown> | undefined) ?? undefined,
      stderrTail: stderr
        .reverse()
        .map((row) => (row.data as { line?: string }).line ?? '')
        .join('\n'),
    };
  }

  /** Events of the run appended but not yet written. */
  pendingOf(runId: string): number {
    return this.writes.get(runId)?.pending ?? 0;
  }

  /** Settles once every event appended so far is written (or given up). */
  async written(runId: string): Promise<void> {
    await this.writes.get(runId)?.tail;
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
      if (!channel) return this.followThroughDatabase(runId, afterSeq);
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

  /**
   * A run this instance does not write (another instance runs it, or it has ended): its stored
   * events after `afterSeq`, then the new ones as this instance's one reader of the run reads them
   * (see tailOf), deduplicated by seq, until `done`; ends when the service stops.
   */
  private followThroughDatabase(runId: string, afterSeq: number): Observable<StoredEvent> {
    return new Observable<StoredEvent>((subscriber) => {
      const tail = this.tailOf(runId);
      tail.watchers++;
      let inner: Subscription | undefined;
      let closed = false;
      // The reader's starting point is known before the replay is read: nothing falls between the two.
      void tail.ready.then(() => {
        if (closed) return;
        const buffered = new ReplaySubject<StoredEvent>();
        const live = tail.events.subscribe(buffered);
        let lastSeq = afterSeq;
        inner = concat(this.stored(runId, afterSeq), buffered)
          .pipe(
            mergeMap((event) => {
              if (event.seq <= lastSeq) return [];
              lastSeq = event.seq;
              return [event];
            }),
            takeWhile((event) => event.type !== 'done', true),
          )
          .subscribe(subscriber);
        inner.add(live);
      });
      return () => {
        closed = true;
        inner?.unsubscribe();
        if (--tail.watchers === 0) tail.stop();
      };
    });
  }

  /**
   * This instance's one reader of a run written elsewhere, shared by all its subscribers here: from
   * the newest row at its start, it reads the new rows whenever the feed says there are some (and
   * every few seconds, should a notification be lost), in seq order with no gap, until `done`.
   */
  private tailOf(runId: string): SharedTail {
    const existing = this.tails.get(runId);
    if (existing) return existing;
    const events = new Subject<StoredEvent>();
    let lastSeq = 0;
    let reading = false;
    let readAgain = false;
    let stopped = false;
    const stop = () => {
      if (stopped) return;
      stopped = true;
      changes.unsubscribe();
      clearInterval(poll);
      if (this.tails.get(runId) === tail) this.tails.delete(runId);
      events.complete();
    };
    const tail: SharedTail = { events, watchers: 0, stop, ready: this.lastSeq(runId).then((seq) => void (lastSeq = seq), () => undefined) };
    const read = async (): Promise<void> => {
      await tail.ready;
      if (reading) return void (readAgain = true);
      reading = true;
      try {
        do {
          readAgain = false;
          for (const event of await this.rowsAfter(runId, lastSeq)) {
            if (event.seq !== lastSeq + 1 || stopped) break; // a later read fills a gap
            lastSeq = event.seq;
            events.next(event);
            if (event.type === 'done') return stop();
          }
        } while (readAgain && !stopped);
      } catch (error) {
        this.logger.warn({ run_id: runId, err: error }, 'could not read run events; reading again at the next change');
      } finally {
        reading = false;
      }
    };
    const changes = this.feed.changes(runId).subscribe({ next: () => void read(), complete: stop });
    const poll = setInterval(() => void read(), SAFETY_POLL_MS);
    this.tails.set(runId, tail);
    return tail;
  }

  private async rowsAfter(runId: string, afterSeq: number): Promise<StoredEvent[]> {
    const rows = await this.events.find({ where: { runId, seq: MoreThan(afterSeq) }, order: { seq: 'ASC' }, take: READ_BATCH });
    return rows.map((row) => ({ seq: row.seq, type: row.type, data: row.data }));
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
