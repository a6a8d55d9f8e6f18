import { type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeOnEngines, itOn } from './support/engines';
import { FakeAnthropic } from './support/fake-anthropic';
import { api } from './support/http';
import { freePort, serviceOutput, startService, waitForHealth } from './support/service-process';
import { readSse, type SseEvent, seqsOf, usesATool } from './support/sse-client';
import { createDatabase, type DatabaseKind, dropDatabase, login } from './support/test-app';

const ADMIN = { email: 'durable@example.test', password: 'durable-password-1' };
/** kill -9 of the service's pid; SIGTERM; and systemd's KillMode=control-group (every process of its cgroup killed). */
const STOPS = ['SIGKILL', 'SIGTERM', 'control-group'] as const;
type Stop = (typeof STOPS)[number];
/** The cgroup (v2) the service runs in, as a systemd unit's would be: unified on a hybrid host. */
const UNIT_ROOT = existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';

/**
 * The service in its own process, stopped the ways deploys stop it (kill -9 of its pid, SIGTERM)
 * while agents work; the sandboxes and the agents go on, and the next service follows them again.
 * On Modal the sandboxes live in the (fake) control plane, outside the service's cgroup, and the
 * agent runs detached in the Modal sandbox, followed by execs. The database kind matters to the
 * service's side only: Modal runs on pglite.
 */
describeOnEngines('sandboxes and runs outlive the service', (engine) => {
describe.each<DatabaseKind>(engine.pick({ local: ['pglite', 'postgres'], modal: ['pglite'] }))('(%s)', (database) => {
  let fake: FakeAnthropic;
  let dataDir: string;
  let databaseUrl: string | undefined;
  let port: number;
  let service: ChildProcess | undefined;
  let url: string;
  let token: string;
  let admin: ReturnType<typeof api>;
  let unit: string;

  beforeAll(async () => {
    fake = await FakeAnthropic.start({ delayMs: 5 });
    dataDir = mkdtempSync(join(tmpdir(), 'mss-durable-'));
    databaseUrl = database === 'postgres' ? await createDatabase() : undefined;
    port = await freePort();
    unit = join(UNIT_ROOT, `mss-durable-test-${process.pid}-${engine.name}-${database}.service`);
    mkdirSync(unit);
    url = `http://127.0.0.1:${port}`;
    await start();
  });

  afterAll(async () => {
    if (service) {
      const listed = (await admin.get('/api/sandboxes?limit=100')).body.data;
      for (const sandbox of Array.isArray(listed) ? listed : (listed?.items ?? [])) {
        if (sandbox.status === 'running') await admin.delete(`/api/sandboxes/${sandbox.sandbox_id}?sync=false`);
      }
      await stop('SIGTERM');
    }
    await fake?.stop();
    if (databaseUrl) await dropDatabase(databaseUrl);
    rmSync(dataDir, { recursive: true, force: true });
    rmdirSync(unit);
  });

  async function start(): Promise<void> {
    service = startService({
      ...engine.env(),
      PORT: String(port),
      DATA_DIR: dataDir,
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      LOGIN_RATE_LIMIT: '1000',
      // Stable across restarts, as an operator sets it: the restarted instance takes its runs back at once.
      INSTANCE_ID: `durable-${engine.name}-${database}`,
      ANTHROPIC_BASE_URL: fake.url,
      ANTHROPIC_API_KEY: 'sk-durable-test',
      ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    }, { cgroupProcsFile: join(unit, 'cgroup.procs') });
    await waitForHealth(url, service);
    token = await login(url, ADMIN.email, ADMIN.password);
    admin = api(url, token);
  }

  /** kill -9 hits only the service's pid (its process group is the test's); control-group kills everything in its unit's cgroup. */
  async function stop(signal: Stop): Promise<void> {
    const exited = once(service!, 'exit');
    if (signal === 'control-group') {
      expect(readFileSync(join(unit, 'cgroup.procs'), 'utf8').trim()).toBe(String(service!.pid));
      writeFileSync(join(unit, 'cgroup.kill'), '1');
    } else service!.kill(signal);
    const [code, by] = await exited;
    if (signal === 'SIGTERM') expect({ code, by, output: serviceOutput(service!).slice(-2000) }).toMatchObject({ code: 0 });
    service = undefined;
  }

  async function createSandbox(body: Record<string, unknown> = {}): Promise<string> {
    const created = await admin.post('/api/sandboxes', body);
    expect(created.status).toBe(201);
    return created.body.data.sandbox_id;
  }

  async function sh(sandboxId: string, script: string): Promise<{ exit_code: number; stdout: string }> {
    const response = await admin.post(`/api/sandboxes/${sandboxId}/exec`, { command: ['sh', '-c', script] });
    expect(response.status).toBe(200);
    return response.body.data;
  }

  const eventsUrl = (sandboxId: string, runId: string) => `${url}/api/sandboxes/${sandboxId}/runs/${runId}/events`;

  it.each(STOPS)('%s during a streaming run: the same sandbox processes go on and the stream resumes with every event once', async (signal) => {
    const sandboxId = await createSandbox();
    const sleeper = (await sh(sandboxId, 'sleep 1000 >/dev/null 2>&1 & echo $!')).stdout.trim();
    fake.reset();
    fake.script([
      { content: [{ type: 'text', text: 'Writing it slowly.' }, { type: 'tool_use', name: 'Bash', input: { command: 'sleep 5 && echo survived > /mnt/workspace/durable.txt', description: 'slow write' } }] },
      { content: [{ type: 'text', text: 'The file is written, across a restart of the service.' }] },
    ]);
    const started = await admin.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'Write durable.txt slowly', include_partial_messages: true });
    expect(started.status).toBe(202);
    const runId = started.body.data.run_id;

    const before = await readSse(eventsUrl(sandboxId, runId), { token, until: usesATool });
    expect(before.events.some(usesATool)).toBe(true);
    await stop(signal);
    await start();

    expect((await admin.get(`/api/sandboxes/${sandboxId}`)).body.data.status).toBe('running');
    expect((await sh(sandboxId, `kill -0 ${sleeper} && echo alive`)).stdout).toBe('alive\n');
    const after = await readSse(eventsUrl(sandboxId, runId), { token, lastEventId: before.events[before.events.length - 1].id });
    const streamed = [...seqsOf(before.events), ...seqsOf(after.events)];
    expect(streamed).toEqual(streamed.map((_, index) => index + 1));
    const done = after.events[after.events.length - 1];
    expect(done.event).toBe('done');
    expect(JSON.parse(done.data)).toMatchObject({ status: 'succeeded', exit_code: 0 });

    const replay = await readSse(eventsUrl(sandboxId, runId), { token });
    expect(seqsOf(replay.events)).toEqual(streamed);
    const run = (await admin.get(`/api/sandboxes/${sandboxId}/runs/${runId}`)).body.data;
    expect(run).toMatchObject({ status: 'succeeded', result: 'The file is written, across a restart of the service.' });
    expect((await sh(sandboxId, 'cat /mnt/workspace/durable.txt')).stdout).toBe('survived\n');
  });

  it('a run that finishes while the service is down ends succeeded after the restart, with all its events', async () => {
    const sandboxId = await createSandbox();
    // A Stop hook runs after Claude's last answer and before its result: the service is down meanwhile.
    await sh(sandboxId, `mkdir -p /mnt/workspace/.claude-state && printf '%s' '${JSON.stringify({ hooks: { Stop: [{ hooks: [{ type: 'command', command: 'sleep 6' }] }] } })}' > /mnt/workspace/.claude-state/settings.json`);
    fake.reset();
    fake.script([{ content: [{ type: 'text', text: 'Finished while nobody watched.' }] }]);
    const runId = (await admin.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'Finish alone' })).body.data.run_id;
    const before = await readSse(eventsUrl(sandboxId, runId), { token, until: (event) => event.event === 'assistant' });
    // The model's answer is complete (its response through the gateway, which stops with the service, has ended); the hook runs.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await stop('SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 8_000));
    await start();

    const after = await readSse(eventsUrl(sandboxId, runId), { token, lastEventId: before.events[before.events.length - 1].id });
    const streamed = [...seqsOf(before.events), ...seqsOf(after.events)];
    expect(streamed).toEqual(streamed.map((_, index) => index + 1));
    expect(after.events.map((event) => event.event)).toContain('result');
    const run = (await admin.get(`/api/sandboxes/${sandboxId}/runs/${runId}`)).body.data;
    expect(run).toMatchObject({ status: 'succeeded', result: 'Finished while nobody watched.' });
  });

  it('a sandbox whose lifetime ends while the service is down is recorded as timed out', async () => {
    const sandboxId = await createSandbox({ timeout_seconds: 15 });
    await stop('SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 16_000));
    await start();

    expect((await admin.get(`/api/sandboxes/${sandboxId}`)).body.data).toMatchObject({ status: 'terminated', exit_reason: 'timeout' });
  });

  // The local engine's sandboxes end only by their lifetime (above) or by the service; on Modal the
  // control plane also ends them by itself, e.g. at their idle timeout, and says so.
  itOn(engine, ['modal'], 'only Modal ends a sandbox at its idle timeout without the service').each(['idle_timeout', 'timeout'] as const)('a sandbox Modal ends (%s) while the service is down is recorded with that exit_reason', async (status) => {
    const sandboxId = await createSandbox();
    const modalSandbox = (await engine.fake.sandboxOf(sandboxId)).id;
    await stop('SIGKILL');
    await engine.fake.finish(modalSandbox, status);
    await start();

    expect((await admin.get(`/api/sandboxes/${sandboxId}`)).body.data).toMatchObject({ status: 'terminated', exit_reason: status });
  });

  // An orphan is an engine sandbox of an account that no row accounts for; only the fake control
  // plane can make one from outside the service (/orphan), the local engine has no such door.
  itOn(engine, ['modal'], 'the fake control plane is what makes an orphan here')('stops, at the next start, a Modal sandbox no row accounts for, listing without a deprecation warning', async () => {
    const known = await createSandbox();
    const accountId = (await engine.fake.sandboxOf(known)).tags.account_id;
    const orphan = await engine.fake.orphan(`app-${accountId}`, { account_id: accountId });
    await stop('SIGKILL');
    await start();

    const deadline = Date.now() + 30_000;
    while ((await engine.fake.sandbox(orphan)).result === null && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 250));
    expect((await engine.fake.sandbox(orphan)).result).toMatchObject({ status: 3 });
    expect((await admin.get(`/api/sandboxes/${known}`)).body.data.status).toBe('running');
    const output = serviceOutput(service!);
    expect(output).toContain('orphaned engine sandbox terminated');
    expect(output.split('\n').filter((line) => /deprecated/i.test(line))).toEqual([]);
  });
});
});
