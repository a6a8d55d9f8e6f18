import { type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FakeAnthropic } from './support/fake-anthropic';
import { api } from './support/http';
import { freePort, serviceOutput, startService, waitForHealth } from './support/service-process';
import { readSse, type SseEvent, seqsOf, streamedText } from './support/sse-client';
import { login } from './support/test-app';
import { ThrowawayPostgres } from './support/throwaway-postgres';

const ADMIN = { email: 'outage@example.test', password: 'outage-password-1' };
const DELTAS = 300;
/** One long answer, streamed in DELTAS text deltas 20 ms apart (~6 s): distinct numbered words, so a lost or repeated delta shows. */
const TEXT = Array.from({ length: DELTAS }, (_, index) => `word-${String(index + 1).padStart(3, '0')}`).join(' ') + '.';
/** How many events the client sees before the database goes down. */
const EVENTS_BEFORE_OUTAGE = 20;

/**
 * The database goes away in the middle of a streaming run (its own PostgreSQL, restarted with
 * `-m fast`: every connection the service holds is cut) and comes back: the run loses no event.
 */
describe('a database outage during a run', () => {
  let postgres: ThrowawayPostgres | undefined;
  let fake: FakeAnthropic | undefined;
  let dataDir: string | undefined;
  let service: ChildProcess | undefined;
  let url: string;
  let token: string;
  let admin: ReturnType<typeof api>;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'mss-outage-'));
    postgres = await ThrowawayPostgres.start();
    fake = await FakeAnthropic.start({ piecesPerBlock: DELTAS, delayMs: 20 });
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    service = startService({
      PORT: String(port),
      DATA_DIR: dataDir,
      DATABASE_URL: postgres.url,
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      LOGIN_RATE_LIMIT: '1000',
      ANTHROPIC_BASE_URL: fake.url,
      ANTHROPIC_API_KEY: 'sk-outage-test',
    });
    await waitForHealth(url, service);
    token = await login(url, ADMIN.email, ADMIN.password);
    admin = api(url, token);
  });

  afterAll(async () => {
    try {
      if (service && service.exitCode === null && service.signalCode === null) {
        const listed = await admin?.get('/api/sandboxes?limit=100').catch(() => undefined);
        const body = listed?.body?.data;
        for (const sandbox of Array.isArray(body) ? body : (body?.items ?? [])) {
          if (sandbox.status === 'running') await admin.delete(`/api/sandboxes/${sandbox.sandbox_id}?sync=false`).catch(() => undefined);
        }
        const exited = once(service, 'exit');
        service.kill('SIGTERM');
        const timeout = new AbortController();
        const stopped = await Promise.race([exited.then(() => true), sleep(20_000, false, { signal: timeout.signal }).catch(() => false)]);
        timeout.abort();
        if (!stopped) {
          service.kill('SIGKILL');
          await exited;
        }
      }
    } finally {
      await fake?.stop().catch(() => undefined);
      await postgres?.stop();
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    }
  });

  const eventsUrl = (sandboxId: string, runId: string) => `${url}/api/sandboxes/${sandboxId}/runs/${runId}/events`;

  it.each([
    ['while the run streams', 1_500],
    ['until after the agent has ended (its end is recorded once the database is back)', 10_000],
  ])('PostgreSQL down %s: seqs 1…n, every text delta, the run succeeded, the service healthy', async (_when, downMs) => {
    const created = await admin.post('/api/sandboxes', {});
    expect(created.status).toBe(201);
    const sandboxId = created.body.data.sandbox_id;
    fake!.reset();
    fake!.script([{ content: [{ type: 'text', text: TEXT }] }]);
    const started = await admin.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'Say it at length', include_partial_messages: true });
    expect(started.status).toBe(202);
    const runId = started.body.data.run_id;

    // One client follows the run across the outage; the database goes down once it has seen a few events.
    let reachedOutage!: () => void;
    const outageDue = new Promise<void>((resolve) => (reachedOutage = resolve));
    const live: SseEvent[] = [];
    const following = (async () => {
      for (let attempt = 0; attempt < 20 && live.at(-1)?.event !== 'done'; attempt++) {
        const lastEventId = live.at(-1)?.id;
        let seen = 0;
        try {
          const { events } = await readSse(eventsUrl(sandboxId, runId), {
            token,
            lastEventId,
            // Called for each event but `done` (which ends the read): the events seen so far, should the connection break.
            until: (event) => {
              seen++;
              live.push(event);
              if (live.length === EVENTS_BEFORE_OUTAGE) reachedOutage();
              return false;
            },
          });
          live.push(...events.slice(seen));
        } catch {
          // The connection broke (or the database was down when it reconnected): again from the last event seen.
        }
        if (live.at(-1)?.event !== 'done') await sleep(1_000);
      }
    })();
    await Promise.race([outageDue, following]);
    expect(live.length).toBeGreaterThanOrEqual(EVENTS_BEFORE_OUTAGE);
    expect(live.some((event) => event.event === 'done')).toBe(false);

    await postgres!.restart({ downMs });
    await following;

    // The live stream: every event once, in order, ending with done.
    expect(seqsOf(live)).toEqual(live.map((_, index) => index + 1));
    expect(live.at(-1)!.event).toBe('done');
    expect(JSON.parse(live.at(-1)!.data)).toMatchObject({ status: 'succeeded', exit_code: 0 });
    expect(streamedText(live)).toBe(TEXT);

    // The record: a full replay gives the same events.
    const replay = await readSse(eventsUrl(sandboxId, runId), { token });
    expect(seqsOf(replay.events)).toEqual(replay.events.map((_, index) => index + 1));
    expect(replay.events.map(({ id, event, data }) => ({ id, event, data: JSON.parse(data) }))).toEqual(live.map(({ id, event, data }) => ({ id, event, data: JSON.parse(data) })));
    expect(streamedText(replay.events)).toBe(TEXT);

    const run = (await admin.get(`/api/sandboxes/${sandboxId}/runs/${runId}`)).body.data;
    expect(run).toMatchObject({ status: 'succeeded', result: TEXT });

    // The outage did hit the run's writes (they were retried), and the service lived through it.
    const output = serviceOutput(service!);
    expect(output).toContain('could not record a run event; retrying');
    expect({ exitCode: service!.exitCode, signal: service!.signalCode }).toEqual({ exitCode: null, signal: null });
    let health = await admin.get('/api/health');
    for (let attempt = 0; attempt < 30 && health.status !== 200; attempt++) {
      await sleep(1_000);
      health = await admin.get('/api/health');
    }
    expect({ status: health.status, body: health.body }).toMatchObject({ status: 200 });
  });
});
