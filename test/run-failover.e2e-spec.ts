import { type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeAnthropic } from './support/fake-anthropic';
import { api } from './support/http';
import { freePort, serviceOutput, startService, waitForHealth } from './support/service-process';
import { readSse, type SseEvent, seqsOf, usesATool } from './support/sse-client';
import { createDatabase, dropDatabase, login } from './support/test-app';

const ADMIN = { email: 'failover@example.test', password: 'failover-password-1' };
const LEASE_SECONDS = 5;

interface Instance {
  name: string;
  url: string;
  process: ChildProcess;
}

/**
 * Two instances of the service (own processes) on one PostgreSQL database and one host's local
 * engine: a run one of them follows can be cancelled through the other, and when its owner is
 * killed the other takes it over within the lease and ends it with every event once.
 */
describe('runs fail over between instances', () => {
  let fake: FakeAnthropic;
  let dataDir: string;
  let databaseUrl: string;
  const instances: Record<'a' | 'b', Instance | undefined> = { a: undefined, b: undefined };
  let token: string;

  beforeAll(async () => {
    fake = await FakeAnthropic.start({ delayMs: 5 });
    dataDir = mkdtempSync(join(tmpdir(), 'mss-failover-'));
    databaseUrl = await createDatabase();
    instances.a = await start('a');
    instances.b = await start('b');
    token = await login(instances.a.url, ADMIN.email, ADMIN.password);
  });

  afterAll(async () => {
    const b = instances.b;
    if (b) {
      const listed = (await api(b.url, token).get('/api/sandboxes?limit=100')).body.data;
      for (const sandbox of Array.isArray(listed) ? listed : []) {
        if (sandbox.status === 'running') await api(b.url, token).delete(`/api/sandboxes/${sandbox.sandbox_id}?sync=false`);
      }
    }
    for (const instance of Object.values(instances)) {
      if (!instance || instance.process.exitCode !== null || instance.process.signalCode !== null) continue;
      const exited = once(instance.process, 'exit');
      instance.process.kill('SIGTERM');
      await exited;
    }
    await fake?.stop();
    await dropDatabase(databaseUrl);
    rmSync(dataDir, { recursive: true, force: true });
  });

  async function start(name: 'a' | 'b'): Promise<Instance> {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const process = startService({
      PORT: String(port),
      DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      INSTANCE_ID: `failover-${name}`,
      RUN_LEASE_SECONDS: String(LEASE_SECONDS),
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      LOGIN_RATE_LIMIT: '1000',
      ANTHROPIC_BASE_URL: fake.url,
      ANTHROPIC_API_KEY: 'sk-failover-test',
    });
    await waitForHealth(url, process);
    return { name, url, process };
  }

  const client = (instance: Instance) => api(instance.url, token);
  const eventsUrl = (instance: Instance, sandboxId: string, runId: string) => `${instance.url}/api/sandboxes/${sandboxId}/runs/${runId}/events`;

  async function runOnA(command: string, finalText: string): Promise<{ sandboxId: string; runId: string }> {
    const created = await client(instances.a!).post('/api/sandboxes', {});
    expect(created.status).toBe(201);
    const sandboxId = created.body.data.sandbox_id;
    fake.reset();
    fake.script([
      { content: [{ type: 'tool_use', name: 'Bash', input: { command, description: 'slow work' } }] },
      { content: [{ type: 'text', text: finalText }] },
    ]);
    const started = await client(instances.a!).post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'Work slowly' });
    expect(started.status).toBe(202);
    return { sandboxId, runId: started.body.data.run_id };
  }

  it('cancels through B a run that A follows', async () => {
    const { sandboxId, runId } = await runOnA('sleep 60', 'never reached');
    await readSse(eventsUrl(instances.b!, sandboxId, runId), { token, until: usesATool });

    const cancelled = await client(instances.b!).post(`/api/sandboxes/${sandboxId}/runs/${runId}/cancel`);

    expect(cancelled.body.data).toMatchObject({ status: 'cancelled' });
    const { events } = await readSse(eventsUrl(instances.b!, sandboxId, runId), { token });
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ status: 'cancelled' });
    expect(serviceOutput(instances.a!.process)).toContain(runId);
  });

  it('when A, which follows a run, is killed, B takes it over and ends it; a client of B sees every event once', async () => {
    const { sandboxId, runId } = await runOnA('sleep 8 && echo failed-over > /mnt/workspace/failover.txt', 'Done, on another instance.');
    const seen: SseEvent[] = [];
    const following = readSse(eventsUrl(instances.b!, sandboxId, runId), {
      token,
      until: (event) => {
        seen.push(event);
        return false;
      },
    });
    while (!seen.some(usesATool)) await new Promise((resolve) => setTimeout(resolve, 100));

    instances.a!.process.kill('SIGKILL');
    await once(instances.a!.process, 'exit');
    const { events } = await following;

    expect(seqsOf(events)).toEqual(events.map((_, index) => index + 1));
    expect(JSON.parse(events.at(-1)!.data)).toMatchObject({ status: 'succeeded', exit_code: 0 });
    const run = (await client(instances.b!).get(`/api/sandboxes/${sandboxId}/runs/${runId}`)).body.data;
    expect(run).toMatchObject({ status: 'succeeded', result: 'Done, on another instance.' });
    expect(serviceOutput(instances.b!.process)).toMatch(new RegExp(`"run_id":"${runId}".*run followed again from its recorded events`));
    const file = await client(instances.b!).post(`/api/sandboxes/${sandboxId}/exec`, { command: ['cat', '/mnt/workspace/failover.txt'] });
    expect(file.body.data.stdout).toBe('failed-over\n');
  });
});
