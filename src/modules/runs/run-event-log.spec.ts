import { Logger } from '@nestjs/common';
import { DataSource, FindManyOptions, FindOperator, InsertResult, Repository } from 'typeorm';
import { insertRun, openTestDatabase } from '../../testing/pglite-database';
import { strictMock } from '../../testing/strict-mock';
import { RunEvent } from './run-event.entity';
import { RunEventLog, StoredEvent } from './run-event-log';
import { singleInstanceFeed } from '../../testing/run-fixtures';
import { RunEventFeed } from './run-event-feed';
import { lastValueFrom, toArray } from 'rxjs';

const RUN = 'run-1';
const settle = () => new Promise((resolve) => setImmediate(resolve));
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What one follower of a run has received so far. */
function follower(log: RunEventLog, afterSeq: number) {
  const seen: StoredEvent[] = [];
  const state = { completed: false, seqs: () => seen.map((event) => event.seq), seen };
  log.follow(RUN, afterSeq).subscribe({ next: (event) => seen.push(event), complete: () => (state.completed = true) });
  return state;
}

describe('RunEventLog', () => {
  /** The run_event table. */
  let table: RunEvent[];
  let repository: jest.Mocked<Repository<RunEvent>>;
  let log: RunEventLog;

  function rowsAfter(options: FindManyOptions<RunEvent>): RunEvent[] {
    const where = options.where as { runId: string; seq: FindOperator<number> };
    return table.filter((row) => row.runId === where.runId && row.seq > where.seq.value).sort((a, b) => a.seq - b.seq);
  }

  beforeEach(() => {
    table = [];
    repository = strictMock<Repository<RunEvent>>('runEvents', ['insert', 'find']);
    repository.insert.mockImplementation(async (row) => {
      table.push({ ...(row as RunEvent), createdAt: new Date() });
      return {} as InsertResult;
    });
    repository.find.mockImplementation(async (options) => rowsAfter(options!));
    log = new RunEventLog(repository, singleInstanceFeed(strictMock<DataSource>('dataSource', [])));
    log.open(RUN);
  });

  it('replays stored events after the given seq, then live ones, with no duplicate when a live event is also in the stored page', async () => {
    await log.append(RUN, 'system', { subtype: 'init' });
    await log.append(RUN, 'assistant', { n: 2 });
    // The replay query is slow: event 3 is stored and published live while it runs, so it is in both.
    let releaseReplay!: () => void;
    repository.find.mockImplementationOnce((options) => new Promise((resolve) => (releaseReplay = () => resolve(rowsAfter(options!)))));

    const client = follower(log, 1);
    await log.append(RUN, 'assistant', { n: 3 });
    releaseReplay();
    await settle();
    await log.append(RUN, 'done', { status: 'succeeded' });
    await settle();

    expect(client.seqs()).toEqual([2, 3, 4]);
    expect(client.seen.map((event) => event.type)).toEqual(['assistant', 'assistant', 'done']);
    expect(client.completed).toBe(true);
  });

  it('completes a follower with the done event, even before the log is closed', async () => {
    const client = follower(log, 0);

    await log.append(RUN, 'output', { line: 'hello' });
    expect(client.completed).toBe(false);
    await log.append(RUN, 'done', { status: 'succeeded' });
    await settle();

    expect(client.seqs()).toEqual([1, 2]);
    expect(client.completed).toBe(true);
  });

  it('replays a finished run from storage and completes', async () => {
    await log.append(RUN, 'output', { line: 'hello' });
    await log.append(RUN, 'done', { status: 'succeeded' });
    await log.close(RUN);

    const client = follower(log, 1);
    await settle();

    expect(client.seen).toEqual([{ seq: 2, type: 'done', data: { status: 'succeeded' } }]);
    expect(client.completed).toBe(true);
  });

  it('gives every event to each of several followers', async () => {
    const first = follower(log, 0);
    const second = follower(log, 0);
    await settle();

    await log.append(RUN, 'system', {});
    await log.append(RUN, 'stderr', { line: 'warning' });
    await log.append(RUN, 'done', {});
    await settle();

    for (const client of [first, second]) {
      expect(client.seqs()).toEqual([1, 2, 3]);
      expect(client.completed).toBe(true);
    }
  });

  it('numbers events in the order they were produced even when their inserts take different times', async () => {
    const insertTimes = [30, 0, 10];
    repository.insert.mockImplementation(async (row) => {
      await delay(insertTimes.shift() ?? 0);
      table.push(row as RunEvent);
      return {} as InsertResult;
    });
    const client = follower(log, 0);
    await settle();

    await Promise.all([log.append(RUN, 'system', { n: 'a' }), log.append(RUN, 'assistant', { n: 'b' }), log.append(RUN, 'done', { n: 'c' })]);
    await settle();

    expect(table.map((row) => [row.seq, row.data])).toEqual([
      [1, { n: 'a' }],
      [2, { n: 'b' }],
      [3, { n: 'c' }],
    ]);
    expect(client.seen.map((event) => [event.seq, event.type])).toEqual([
      [1, 'system'],
      [2, 'assistant'],
      [3, 'done'],
    ]);
  });

  it('continues numbering from the seq it is opened with', async () => {
    log.open('run-2', 8);

    await log.append('run-2', 'done', {});

    expect(table).toEqual([expect.objectContaining({ runId: 'run-2', seq: 8, type: 'done' })]);
  });

  it('gives up an event its run no longer takes (foreign key violation) and keeps recording later ones', async () => {
    repository.insert.mockRejectedValueOnce(Object.assign(new Error('violates foreign key constraint'), { code: '23503' }));
    const client = follower(log, 0);
    await settle();

    await expect(log.append(RUN, 'assistant', { n: 1 })).rejects.toThrow('violates foreign key constraint');
    await log.append(RUN, 'done', { status: 'failed' });
    await settle();

    expect(repository.insert).toHaveBeenCalledTimes(2);
    expect(client.seen.map((event) => event.type)).toEqual(['done']);
    expect(client.completed).toBe(true);
  });
});

describe('RunEventLog (real PGlite database)', () => {
  let database: Awaited<ReturnType<typeof openTestDatabase>>;
  let dataSource: DataSource;
  let repository: Repository<RunEvent>;
  let insert: jest.SpyInstance;
  let log: RunEventLog;
  let runId: string;
  let feed: RunEventFeed;

  beforeAll(async () => {
    database = await openTestDatabase();
    dataSource = database.dataSource;
  });
  afterAll(() => database?.close());

  beforeEach(async () => {
    jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    repository = dataSource.getRepository(RunEvent);
    insert = jest.spyOn(repository, 'insert');
    feed = singleInstanceFeed(dataSource);
    log = new RunEventLog(repository, feed);
    runId = await insertRun(dataSource);
    log.open(runId);
  });
  afterEach(() => jest.restoreAllMocks());

  const rows = () => repository.find({ where: { runId }, order: { seq: 'ASC' } });
  /** The seq of each insert attempt, in order. */
  const attempts = () => insert.mock.calls.map(([row]) => (row as RunEvent).seq);
  const connectionLost = () => Object.assign(new Error('Connection terminated unexpectedly'), { code: undefined });

  it('retries a failed insert until it is written, in order, with no gap in the seqs', async () => {
    insert.mockRejectedValueOnce(connectionLost()).mockRejectedValueOnce(connectionLost());
    const seen: StoredEvent[] = [];
    log.follow(runId, 0).subscribe((event) => seen.push(event));
    await settle();

    const appended = [log.append(runId, 'system', { n: 1 }), log.append(runId, 'assistant', { n: 2 }), log.append(runId, 'done', { n: 3 })];
    await settle();
    expect(log.pendingWrites).toBe(3);
    await Promise.all(appended);

    // The first event is tried three times; the later ones wait for it, then are written once each.
    expect(attempts()).toEqual([1, 1, 1, 2, 3]);
    expect((await rows()).map((row) => [row.seq, row.type, row.data])).toEqual([
      [1, 'system', { n: 1 }],
      [2, 'assistant', { n: 2 }],
      [3, 'done', { n: 3 }],
    ]);
    expect(seen.map((event) => event.seq)).toEqual([1, 2, 3]);
    expect(log.pendingWrites).toBe(0);
  });

  it('counts a row already there (its insert succeeded, the answer was lost) as written', async () => {
    // The first attempt reaches the database, then fails as if the connection dropped before the answer.
    insert.mockImplementationOnce(async (row) => {
      await Repository.prototype.insert.call(repository, row);
      throw connectionLost();
    });
    const seen: StoredEvent[] = [];
    log.follow(runId, 0).subscribe((event) => seen.push(event));
    await settle();

    await log.append(runId, 'output', { line: 'once' });
    await log.append(runId, 'done', {});

    // The retry hits the real unique violation of the primary key, and does not try again.
    expect(attempts()).toEqual([1, 1, 2]);
    expect((await rows()).map((row) => [row.seq, row.data])).toEqual([
      [1, { line: 'once' }],
      [2, {}],
    ]);
    expect(seen.map((event) => event.seq)).toEqual([1, 2]);
  }, 10_000);

  it('gives up at once on an event of a run that is gone (real foreign key violation)', async () => {
    log.open('00000000-0000-4000-8000-000000000000');

    await expect(log.append('00000000-0000-4000-8000-000000000000', 'output', { line: 'orphan' })).rejects.toMatchObject({ code: '23503' });

    expect(insert).toHaveBeenCalledTimes(1);
    expect(log.pendingWrites).toBe(0);
  });

  it('stops retrying once the run’s log is abandoned, and writes nothing after an event it gave up (no gap)', async () => {
    // The database is unreachable until just after the log is abandoned.
    let reachable = false;
    insert.mockImplementation(async (row) => {
      if (!reachable) throw connectionLost();
      return Repository.prototype.insert.call(repository, row) as Promise<InsertResult>;
    });
    const first = log.append(runId, 'output', { line: 'a' }).catch((error: Error) => error);
    const second = log.append(runId, 'done', {}).catch((error: Error) => error);
    while (insert.mock.calls.length < 2) await delay(10);
    expect(log.pendingWrites).toBe(2);

    log.abandon(runId);
    reachable = true;

    await expect(first).resolves.toBeInstanceOf(Error);
    await expect(second).resolves.toBeInstanceOf(Error);
    const tried = attempts();
    await delay(500);
    expect(attempts()).toEqual(tried);
    // Event 2 written without event 1 would leave a gap, and move the resume point past event 1's line.
    expect(tried.every((seq) => seq === 1)).toBe(true);
    expect(log.pendingWrites).toBe(0);
    expect(await rows()).toEqual([]);
  });

  it('stores where each event’s line ends in the agent’s log, and nothing for what the service adds', async () => {
    await log.append(runId, 'system', { subtype: 'init' }, { stream: 'stdout', offset: 120 });
    await log.append(runId, 'stderr', { line: 'warning' }, { stream: 'stderr', offset: 8 });
    await log.append(runId, 'done', {});

    expect((await rows()).map((row) => [row.seq, row.logStream, row.logOffset])).toEqual([
      [1, 'stdout', 120],
      [2, 'stderr', 8],
      [3, null, null],
    ]);
  });

  describe('a run another instance writes', () => {
    it('streams it to every subscriber of this instance from one shared reader: replay, then each new row once, in order, until done', async () => {
      const writer = new RunEventLog(repository, singleInstanceFeed(dataSource));
      const reader = new RunEventLog(repository, feed);
      writer.open(runId);
      await writer.append(runId, 'system', { n: 1 });
      const find = jest.spyOn(repository, 'find');
      const first = lastValueFrom(reader.follow(runId, 0).pipe(toArray()));
      const second = lastValueFrom(reader.follow(runId, 1).pipe(toArray()));
      await new Promise((resolve) => setTimeout(resolve, 50));
      const readsBefore = find.mock.calls.length;

      for (let n = 2; n <= 5; n++) {
        await writer.append(runId, 'assistant', { n });
        feed.signal(runId); // what the instance's LISTEN connection does on the trigger's notification
      }
      await writer.append(runId, 'done', {});
      feed.signal(runId);

      expect((await first).map((event) => event.seq)).toEqual([1, 2, 3, 4, 5, 6]);
      expect((await second).map((event) => event.seq)).toEqual([2, 3, 4, 5, 6]);
      // Two subscribers, one reader: its reads per change, not one per subscriber.
      expect(find.mock.calls.length - readsBefore).toBeLessThanOrEqual(6);
    });
  });

  describe('resumePoint', () => {
    it('is the start of the run when nothing was recorded', async () => {
      await expect(log.resumePoint(runId)).resolves.toEqual({ offsets: { stdout: 0, stderr: 0 }, result: undefined, stderrTail: '' });
    });

    it('gives the last offset of each log, the last result and the last stderr lines', async () => {
      const big = 5 * 1024 ** 3;
      await log.append(runId, 'system', { type: 'system' }, { stream: 'stdout', offset: 100 });
      await log.append(runId, 'result', { type: 'result', subtype: 'error_during_execution' }, { stream: 'stdout', offset: 200 });
      for (let line = 1; line <= 25; line++) await log.append(runId, 'stderr', { line: `stderr ${line}` }, { stream: 'stderr', offset: line * 10 });
      await log.append(runId, 'result', { type: 'result', subtype: 'success', session_id: 'sess-9' }, { stream: 'stdout', offset: big });
      await log.append(runId, 'error', { message: 'added by the service' });

      const point = await log.resumePoint(runId);

      expect(point.offsets).toEqual({ stdout: big, stderr: 250 });
      expect(point.result).toEqual({ type: 'result', subtype: 'success', session_id: 'sess-9' });
      expect(point.stderrTail).toBe(Array.from({ length: 20 }, (_, index) => `stderr ${index + 6}`).join('\n'));
    });

    it('ignores the events of other runs', async () => {
      const other = await insertRun(dataSource);
      log.open(other);
      await log.append(other, 'result', { type: 'result' }, { stream: 'stdout', offset: 99 });
      await log.append(other, 'stderr', { line: 'other' }, { stream: 'stderr', offset: 6 });

      await expect(log.resumePoint(runId)).resolves.toEqual({ offsets: { stdout: 0, stderr: 0 }, result: undefined, stderrTail: '' });
    });
  });
});
