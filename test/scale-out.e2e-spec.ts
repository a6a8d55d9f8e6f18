import { FakeAnthropic } from './support/fake-anthropic';
import { api } from './support/http';
import { readSse, seqsOf, streamedText } from './support/sse-client';
import { startTestApp, type TestApp } from './support/test-app';

const TEXT = Array.from({ length: 120 }, (_, index) => `word${index + 1}`).join(' ');

/**
 * Two instances of the service on one PostgreSQL database (and one host's local engine, sharing its
 * DATA_DIR and so its sandbox supervisor): any instance streams any run, whichever executes it.
 */
describe('several instances on one PostgreSQL database', () => {
  let fake: FakeAnthropic;
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    fake = await FakeAnthropic.start({ piecesPerBlock: 120, delayMs: 15 });
    const env = { ANTHROPIC_BASE_URL: fake.url, ANTHROPIC_API_KEY: 'sk-scale-out-test' };
    a = await startTestApp({ database: 'postgres', env });
    b = await startTestApp({ env, reuse: { dataDir: a.dataDir, databaseUrl: a.databaseUrl } });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close({ purge: true });
    await fake?.stop();
  });


  async function startRun(): Promise<{ sandboxId: string; runId: string }> {
    const created = await api(a.url, a.adminToken).post('/api/sandboxes', {});
    expect(created.status).toBe(201);
    const sandboxId = created.body.data.sandbox_id;
    fake.reset();
    fake.script([{ content: [{ type: 'text', text: TEXT }] }]);
    const started = await api(a.url, a.adminToken).post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'Say it slowly', include_partial_messages: true });
    expect(started.status).toBe(202);
    return { sandboxId, runId: started.body.data.run_id };
  }

  const eventsUrl = (app: TestApp, sandboxId: string, runId: string) => `${app.url}/api/sandboxes/${sandboxId}/runs/${runId}/events`;

  it('streams a run executed by A through B, from its first event to done', async () => {
    const { sandboxId, runId } = await startRun();

    const { events } = await readSse(eventsUrl(b, sandboxId, runId), { token: b.adminToken });

    expect(seqsOf(events)).toEqual(events.map((_, index) => index + 1));
    expect(events.at(-1)!.event).toBe('done');
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ status: 'succeeded' });
    expect(streamedText(events)).toBe(TEXT);
    expect((await api(b.url, b.adminToken).get(`/api/sandboxes/${sandboxId}`)).body.data.status).toBe('running');
  });

  it('resumes through A, with Last-Event-ID, a stream read through B mid-run: no gap, no duplicate', async () => {
    const { sandboxId, runId } = await startRun();

    const first = await readSse(eventsUrl(b, sandboxId, runId), { token: b.adminToken, stopAfter: 30 });
    expect(first.events.at(-1)!.event).not.toBe('done');
    const rest = await readSse(eventsUrl(a, sandboxId, runId), { token: a.adminToken, lastEventId: first.events.at(-1)!.id });

    const all = [...first.events, ...rest.events];
    expect(seqsOf(all)).toEqual(all.map((_, index) => index + 1));
    expect(all.at(-1)!.event).toBe('done');
    expect(streamedText(all)).toBe(TEXT);
  });
});
