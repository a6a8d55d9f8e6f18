import { DataSource } from 'typeorm';
import { insertRun, openTestDatabase } from '../../testing/pglite-database';
import { ModelGatewayToken } from './model-gateway-token.entity';
import { hashOf, ModelGatewayTokens, NO_USAGE } from './model-gateway-tokens.service';

describe('ModelGatewayTokens (real PGlite database)', () => {
  let database: Awaited<ReturnType<typeof openTestDatabase>>;
  let dataSource: DataSource;
  let tokens: ModelGatewayTokens;

  beforeAll(async () => {
    database = await openTestDatabase();
    dataSource = database.dataSource;
    tokens = new ModelGatewayTokens(dataSource.getRepository(ModelGatewayToken));
  });
  afterAll(() => database?.close());

  it('issues a prefixed random token of 32 bytes that resolves to its run, storing only its hash', async () => {
    const runId = await insertRun(dataSource);

    const token = await tokens.issue(runId);

    expect(token).toMatch(/^mgw_[A-Za-z0-9_-]{43}$/);
    await expect(tokens.resolve(token)).resolves.toBe(runId);
    const stored = JSON.stringify(await dataSource.query('SELECT * FROM model_gateway_token WHERE run_id = $1', [runId]));
    expect(stored).not.toContain(token);
    expect(stored).not.toContain(token.slice(4));
    expect(stored).toContain(hashOf(token));
  });

  it('gives every run a different token', async () => {
    const first = await tokens.issue(await insertRun(dataSource));
    const second = await tokens.issue(await insertRun(dataSource));

    expect(first).not.toBe(second);
  });

  it('stops resolving a token once its run is revoked, and revoking again changes nothing', async () => {
    const runId = await insertRun(dataSource);
    const token = await tokens.issue(runId);

    await tokens.revoke(runId);
    await tokens.revoke(runId);

    await expect(tokens.resolve(token)).resolves.toBeNull();
  });

  it('resolves nothing for unknown, malformed or empty tokens', async () => {
    const token = await tokens.issue(await insertRun(dataSource));

    await expect(tokens.resolve(`mgw_${'A'.repeat(43)}`)).resolves.toBeNull();
    await expect(tokens.resolve(`${token}x`)).resolves.toBeNull();
    await expect(tokens.resolve(token.slice(4))).resolves.toBeNull();
    await expect(tokens.resolve('')).resolves.toBeNull();
  });

  it('revokes at boot the tokens of runs that ended, and keeps those of active runs', async () => {
    const ended = await insertRun(dataSource, 'interrupted');
    const active = await insertRun(dataSource, 'running');
    const endedToken = await tokens.issue(ended);
    const activeToken = await tokens.issue(active);

    await tokens.revokeEndedRuns();

    await expect(tokens.resolve(endedToken)).resolves.toBeNull();
    await expect(tokens.resolve(activeToken)).resolves.toBe(active);
  });

  it('adds usage atomically, without losing concurrent increments', async () => {
    const runId = await insertRun(dataSource);
    await tokens.issue(runId);
    const once = { requests: 1, input_tokens: 100, output_tokens: 20, cache_creation_input_tokens: 5, cache_read_input_tokens: 7 };

    await Promise.all(Array.from({ length: 10 }, () => tokens.addUsage(runId, once)));

    expect((await tokens.usageOf([runId])).get(runId)).toEqual({ requests: 10, input_tokens: 1000, output_tokens: 200, cache_creation_input_tokens: 50, cache_read_input_tokens: 70 });
  });

  it('reports zero usage for a fresh token and nothing for a run without one', async () => {
    const withToken = await insertRun(dataSource);
    const without = await insertRun(dataSource);
    await tokens.issue(withToken);

    const usage = await tokens.usageOf([withToken, without]);

    expect(usage.get(withToken)).toEqual(NO_USAGE);
    expect(usage.has(without)).toBe(false);
  });
});
