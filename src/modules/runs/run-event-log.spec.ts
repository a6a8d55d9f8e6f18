import { FindManyOptions, FindOperator, InsertResult, Repository } from 'typeorm';
import { RunEvent } from './run-event.entity';
import { RunEventLog, StoredEvent } from './run-event-log';
import { strictMock } from '../../testing/strict-mock';


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
    log = new RunEventLog(repository);
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

  it('keeps recording later events after one insert failed', async () => {
    repository.insert.mockRejectedValueOnce(new Error('connection lost'));
    const client = follower(log, 0);
    await settle();

    await expect(log.append(RUN, 'assistant', { n: 1 })).rejects.toThrow('connection lost');
    await log.append(RUN, 'done', { status: 'failed' });
    await settle();

    expect(client.seen.map((event) => event.type)).toEqual(['done']);
    expect(client.completed).toBe(true);
  });
});
