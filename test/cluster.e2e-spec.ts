import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SandboxProvider } from '../src/integrations/sandbox/sandbox-provider';
import { api } from './support/http';
import { createMember, dropDatabase, startTestApp, TestApp } from './support/test-app';

const SWEEP_SECONDS = 2;

interface LogLine {
  time: number;
  msg: string;
  [field: string]: unknown;
}

/** Two instances of the real app on one PostgreSQL database: background work runs once for the pair. */
describe('two instances sharing one PostgreSQL database (real apps, local engine)', () => {
  let first: TestApp | undefined; // its logs stay readable after it stops
  let second: TestApp;
  let providerSandboxId: string | undefined;
  let databaseUrl: string | undefined;
  let firstStopped = false;

  beforeAll(async () => {
    // A cluster shares its JWT secret (and passport's strategies are per process, so the two apps here must agree).
    const env = { SANDBOX_SWEEP_INTERVAL_SECONDS: String(SWEEP_SECONDS), JWT_SECRET: 'cluster-e2e-shared-jwt-secret-of-32-chars+' };
    first = await startTestApp({ database: 'postgres', env: { ...env, INSTANCE_ID: 'cluster-a' } });
    databaseUrl = first.databaseUrl!;
    second = await startTestApp({ reuse: { dataDir: mkdtempSync(join(tmpdir(), 'mss-e2e-')), databaseUrl }, env: { ...env, INSTANCE_ID: 'cluster-b' } });
  });
  afterAll(async () => {
    await stopFirst();
    await second?.close();
    for (const dataDir of [first?.dataDir, second?.dataDir]) if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    if (databaseUrl) await dropDatabase(databaseUrl);
  });

  /** Stops the first instance as SIGTERM does, after stopping the sandbox on its engine (whichever instance stopped it: the local engine is per DATA_DIR). */
  async function stopFirst(): Promise<void> {
    if (!first || firstStopped) return;
    firstStopped = true;
    if (providerSandboxId) await first.app.get(SandboxProvider).terminate(providerSandboxId).catch(() => undefined);
    await first.close();
  }

  // Both apps run in this process, where Nest's logger is one: lines are told apart by their `instance`, not by the log they are in.
  const lines = (app: TestApp | undefined): LogLine[] => (app?.logs ?? []).map((line) => JSON.parse(line) as LogLine);
  const passesOf = (work: string) =>
    [first, second]
      .flatMap(lines)
      .filter((line) => line.msg === 'background work ran' && line.work === work)
      .map((line) => ({ instance: line.instance as string, pass: line.pass as number, start: line.time - (line.duration_ms as number), end: line.time }))
      .sort((a, b) => a.start - b.start);

  it('reconciles at each start one after the other, stops an idle sandbox once, and sweeps once per period between them', async () => {
    const reconciles = passesOf('sandbox-reconcile');
    expect(reconciles.map(({ pass, instance }) => [pass, instance])).toEqual([
      [1, 'cluster-a'],
      [2, 'cluster-b'],
    ]);

    const user = api(first!.url, (await createMember(first!)).token);
    const created = await user.post('/api/sandboxes', { idle_timeout_seconds: 10 });
    expect(created.status).toBe(201);
    const sandboxId = created.body.data.sandbox_id as string;
    providerSandboxId = created.body.data.provider_sandbox_id ?? undefined;
    const observedFrom = Date.now();

    const deadline = Date.now() + 30_000;
    let ended: { status: string; exit_reason: string } | undefined;
    while (!ended && Date.now() < deadline) {
      const sandbox = (await user.get(`/api/sandboxes/${sandboxId}`)).body.data;
      if (sandbox.status !== 'running') ended = sandbox;
      else await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(ended).toMatchObject({ status: 'terminated', exit_reason: 'idle_timeout' });
    // A few more periods, in which neither instance may stop it again.
    await new Promise((resolve) => setTimeout(resolve, 3 * SWEEP_SECONDS * 1000));

    const endLines = [first, second].flatMap(lines).filter((line) => line.msg === 'sandbox ended' && line.sandbox_id === sandboxId);
    expect(endLines).toEqual([expect.objectContaining({ exit_reason: 'idle_timeout' })]);

    const sweeps = passesOf('sandbox-sweep').filter(({ start }) => start >= observedFrom);
    const window = Date.now() - observedFrom;
    // One pass per period between the two instances: never two at once, never two within a period
    // (a tenth of slack for the instances' timers), and not fewer than one every other period.
    for (const [index, sweep] of sweeps.entries()) {
      if (index === 0) continue;
      expect(sweep.start).toBeGreaterThanOrEqual(sweeps[index - 1].end);
      expect(sweep.start - sweeps[index - 1].start).toBeGreaterThanOrEqual(SWEEP_SECONDS * 1000 * 0.9 - 100);
    }
    expect(sweeps.length).toBeLessThanOrEqual(Math.floor(window / (SWEEP_SECONDS * 900)) + 1);
    expect(sweeps.length).toBeGreaterThanOrEqual(Math.floor(window / (SWEEP_SECONDS * 2000)));
    expect(new Set(sweeps.map(({ pass }) => pass)).size).toBe(sweeps.length);

    // The first instance goes away: the second one runs the passes, still once per period.
    await stopFirst();
    const stoppedAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 3 * SWEEP_SECONDS * 1000));
    const all = passesOf('sandbox-sweep');
    const after = all.filter(({ start }) => start > stoppedAt);
    expect(after.length).toBeGreaterThanOrEqual(2);
    expect(after.every(({ instance }) => instance === 'cluster-b')).toBe(true);
    const before = all[all.indexOf(after[0]) - 1];
    expect(after[0].start - before.start).toBeGreaterThanOrEqual(SWEEP_SECONDS * 1000 * 0.9 - 100);
  }, 90_000);
});
