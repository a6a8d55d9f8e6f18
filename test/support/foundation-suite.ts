import { api, call } from './http';
import { createMember, DatabaseKind, login, startTestApp, TestApp } from './test-app';

/**
 * The foundation suite, run once per database kind (one file each: the logger keeps process-wide
 * state, so each database gets its own Jest module registry).
 */
export function describeFoundation(database: DatabaseKind): void {
describe(`foundation and auth on ${database}`, () => {
  let app: TestApp;
  let admin: ReturnType<typeof api>;

  beforeAll(async () => {
    app = await startTestApp({ database });
    admin = api(app.url, app.adminToken);
  });
  afterAll(() => app?.close({ purge: true }));

  it('serves health (with the database) and the API docs without credentials', async () => {
    const health = await call(app.url, 'GET', '/api/health');
    expect(health.status).toBe(200);
    expect(health.body.info.database.status).toBe('up');
    expect(health.body.info.sandbox_engine).toEqual({ status: 'up', provider: 'local' });
    const docs = await call(app.url, 'GET', '/docs');
    expect(docs.status).toBe(200);
    expect(docs.text).toContain('swagger');
  });

  it('documents every operation with an operationId, a tag and its auth', async () => {
    const { body: spec } = await call(app.url, 'GET', '/docs-json');
    const operations = Object.entries(spec.paths as Record<string, Record<string, any>>).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, operation]) => ({ route: `${method.toUpperCase()} ${path}`, operation })),
    );
    expect(operations.length).toBeGreaterThan(5);
    for (const { route, operation } of operations) {
      expect({ route, operationId: typeof operation.operationId }).toEqual({ route, operationId: 'string' });
      expect({ route, tags: operation.tags?.length > 0 }).toEqual({ route, tags: true });
    }
    const ids = operations.map(({ operation }) => operation.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(spec.paths['/api/auth/me'].get.security).toEqual([{ bearer: [] }]);
  });

  it('logs in the bootstrap admin and rejects a wrong password or a missing credential', async () => {
    const me = await admin.get('/api/auth/me');
    expect(me.status).toBe(200);
    expect(me.body.data).toMatchObject({ email: app.adminEmail, role: 'admin' });
    expect((await call(app.url, 'POST', '/api/auth/login', { body: { email: app.adminEmail, password: 'wrong-password' } })).status).toBe(401);
    expect((await call(app.url, 'GET', '/api/auth/me')).status).toBe(401);
    expect((await call(app.url, 'GET', '/api/auth/me', { token: 'not-a-jwt' })).status).toBe(401);
    expect((await call(app.url, 'GET', '/api/auth/me', { token: `${app.adminToken.slice(0, -2)}xx` })).status).toBe(401);
  });

  it('runs the API token lifecycle: create, use, list without values, revoke', async () => {
    const created = await admin.post('/api/auth/tokens', { name: 'ci', expires_in_days: 30 });
    expect(created.status).toBe(201);
    const { token, id, prefix } = created.body.data;
    expect(token.startsWith(prefix)).toBe(true);
    expect(new Date(created.body.data.expires_at).getTime()).toBeGreaterThan(Date.now() + 29 * 86_400_000);

    const me = await call(app.url, 'GET', '/api/auth/me', { token });
    expect(me.status).toBe(200);
    expect(me.body.data.email).toBe(app.adminEmail);

    const listed = await admin.get('/api/auth/tokens');
    const row = listed.body.data.find((entry: { id: string }) => entry.id === id);
    expect(row).toMatchObject({ name: 'ci', prefix });
    expect(row.last_used_at).not.toBeNull();
    expect(listed.text).not.toContain(token);

    expect((await admin.delete(`/api/auth/tokens/${id}`)).status).toBe(204);
    expect((await call(app.url, 'GET', '/api/auth/me', { token })).status).toBe(401);
    expect((await admin.delete(`/api/auth/tokens/${id}`)).status).toBe(404);
  });

  it('lets the admin create a member in a new account, who is refused admin routes', async () => {
    const member = await createMember(app);
    const me = await call(app.url, 'GET', '/api/auth/me', { token: member.token });
    expect(me.status).toBe(200);
    expect(me.body.data).toMatchObject({ email: member.email, role: 'member', account_id: member.accountId });
    const adminMe = await admin.get('/api/auth/me');
    expect(member.accountId).not.toBe(adminMe.body.data.account_id);
    expect((await call(app.url, 'GET', '/api/users', { token: member.token })).status).toBe(403);
    expect((await call(app.url, 'POST', '/api/users', { token: member.token, body: { email: 'x@example.test', password: 'whatever-123' } })).status).toBe(403);

    const colleague = await admin.post('/api/users', { email: `colleague-${member.email}`, password: 'colleague-pass', account_id: member.accountId });
    expect(colleague.status).toBe(201);
    expect(colleague.body.data.account_id).toBe(member.accountId);
    expect(colleague.text).not.toContain('password');
    expect((await admin.post('/api/users', { email: member.email, password: 'another-pass' })).status).toBe(409);
    const unknownAccount = await admin.post('/api/users', { email: 'y@example.test', password: 'another-pass', account_id: '00000000-0000-4000-8000-000000000000' });
    expect(unknownAccount.status).toBe(400);
    expect(unknownAccount.body.message).toContain('account_id');
  });

  it('answers 400 naming the field for malformed JSON, unknown fields and wrong types on every body-taking route', async () => {
    const { body: spec } = await call(app.url, 'GET', '/docs-json');
    // A real sandbox of the caller: its access guard answers 404 for any other id before the body is read.
    const sandbox = await call(app.url, 'POST', '/api/sandboxes', { token: app.adminToken, body: {} });
    expect(sandbox.status).toBe(201);
    const bodyRoutes = Object.entries(spec.paths as Record<string, Record<string, any>>).flatMap(([path, methods]) =>
      Object.entries(methods)
        .filter(([, operation]) => operation.requestBody?.content?.['application/json'])
        .map(([method, operation]) => ({
          method: method.toUpperCase(),
          path: path.replace('{id}', sandbox.body.data.sandbox_id).replace(/\{[^}]+\}/g, '00000000-0000-4000-8000-000000000000'),
          schema: resolveSchema(spec, operation.requestBody.content['application/json'].schema),
        })),
    );
    expect(bodyRoutes.length).toBeGreaterThanOrEqual(3);
    for (const route of bodyRoutes) {
      const label = `${route.method} ${route.path}`;
      const malformed = await call(app.url, route.method, route.path, { token: app.adminToken, rawBody: '{"broken": ' });
      expect({ label, status: malformed.status, message: malformed.body.message }).toEqual({ label, status: 400, message: 'Malformed JSON in request body' });

      const stringProperty = Object.entries<any>(route.schema.properties ?? {}).find(([, schema]) => schema.type === 'string')?.[0] ?? 'name';
      const nul = await call(app.url, route.method, route.path, { token: app.adminToken, rawBody: JSON.stringify({ [stringProperty]: 'a\u0000b' }) });
      expect({ label, status: nul.status, message: nul.body.message }).toEqual({ label, status: 400, message: `${stringProperty} must not contain NUL (U+0000) characters` });
      const nested = (levels: number) => `{"${stringProperty}":${'['.repeat(levels)}${']'.repeat(levels)}}`;
      const deep = await call(app.url, route.method, route.path, { token: app.adminToken, rawBody: nested(100) });
      expect({ label, status: deep.status, message: deep.body.message }).toEqual({ label, status: 400, message: 'JSON request body is nested deeper than 64 levels' });
      // so deep that the parser itself gives up: still a 400, never the 500 of a stack overflow
      expect({ label, status: (await call(app.url, route.method, route.path, { token: app.adminToken, rawBody: nested(20_000) })).status }).toEqual({ label, status: 400 });

      const unknown = await call(app.url, route.method, route.path, { token: app.adminToken, body: { unexpected_field: 1 } });
      expect({ label, status: unknown.status }).toEqual({ label, status: 400 });
      expect(unknown.body.message).toContain('property unexpected_field should not exist');

      for (const [property, propertySchema] of Object.entries<any>(route.schema.properties ?? {})) {
        const wrong = await call(app.url, route.method, route.path, { token: app.adminToken, body: { [property]: wrongValueFor(propertySchema) } });
        expect({ label, property, status: wrong.status }).toEqual({ label, property, status: 400 });
        expect({ label, property, named: JSON.stringify(wrong.body.message).includes(property) }).toEqual({ label, property, named: true });
      }
    }
  });

  it('answers 500 for nothing a user sends: oversized bodies and odd content types are 4xx', async () => {
    const huge = await call(app.url, 'POST', '/api/auth/login', { rawBody: JSON.stringify({ email: 'a@b.c', password: 'x'.repeat(2 * 1024 * 1024) }) });
    expect(huge.status).toBe(413);
    const textBody = await call(app.url, 'POST', '/api/auth/login', { rawBody: 'email=a', headers: { 'content-type': 'text/plain' } });
    expect(textBody.status).toBe(400);
  });

  it('never writes passwords, tokens or JWTs to the log', async () => {
    const { body } = await admin.post('/api/auth/tokens', { name: 'log-check' });
    await call(app.url, 'GET', '/api/auth/me', { token: body.data.token });
    await call(app.url, 'POST', '/api/auth/login', { body: { email: app.adminEmail, password: 'not-the-password-xyz' } });
    const log = app.logs.join('\n');
    expect(app.logs.length).toBeGreaterThan(5);
    expect(log).toContain('request_id');
    for (const secret of [app.adminPassword, 'not-the-password-xyz', body.data.token, app.adminToken]) {
      expect(log.includes(secret)).toBe(false);
    }
  });

  it('keeps users, API tokens and JWTs valid across a restart', async () => {
    const member = await createMember(app);
    const { body } = await admin.post('/api/auth/tokens', { name: 'survives-restart' });
    const apiToken = body.data.token;
    await app.close();
    app = await startTestApp({ reuse: { dataDir: app.dataDir, databaseUrl: app.databaseUrl } });
    admin = api(app.url, app.adminToken);
    expect((await call(app.url, 'GET', '/api/auth/me', { token: member.token })).status).toBe(200);
    expect((await call(app.url, 'GET', '/api/auth/me', { token: apiToken })).status).toBe(200);
    expect(await login(app.url, member.email, 'member-password-1')).toEqual(expect.any(String));
    const users = await call(app.url, 'GET', '/api/users', { token: app.adminToken });
    expect(users.body.data.filter((user: { role: string }) => user.role === 'admin')).toHaveLength(1);
  });

});
}

export function describeLoginRateLimit(): void {
describe('login rate limit', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ env: { LOGIN_RATE_LIMIT: '3', LOGIN_RATE_WINDOW_SECONDS: '60' } });
  });
  afterAll(() => app?.close({ purge: true }));

  it('answers 429 once the configured number of attempts is used up', async () => {
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 4; attempt++) {
      statuses.push((await call(app.url, 'POST', '/api/auth/login', { body: { email: app.adminEmail, password: 'guess-number-x' } })).status);
    }
    // startTestApp used one attempt to log the admin in
    expect(statuses).toEqual([401, 401, 429, 429]);
  });

  it('is not reset by a client rotating X-Forwarded-For (no proxy is trusted unless TRUST_PROXY says so)', async () => {
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 6; attempt++) {
      const headers = { 'x-forwarded-for': `203.0.113.${attempt + 1}` };
      statuses.push((await call(app.url, 'POST', '/api/auth/login', { body: { email: app.adminEmail, password: 'guess-number-y' }, headers })).status);
    }
    expect(statuses).toEqual([429, 429, 429, 429, 429, 429]);
  });
});

describe('login rate limit behind a trusted proxy', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp({ env: { LOGIN_RATE_LIMIT: '3', LOGIN_RATE_WINDOW_SECONDS: '60', TRUST_PROXY: 'loopback' } });
  });
  afterAll(() => app?.close({ purge: true }));

  it('counts attempts per client address and per email: many addresses get no more guesses at one account', async () => {
    const attempt = (email: string, clientAddress: string) =>
      call(app.url, 'POST', '/api/auth/login', { body: { email, password: 'guess-number-z' }, headers: { 'x-forwarded-for': clientAddress } });
    const statuses: number[] = [];
    for (let index = 0; index < 4; index++) statuses.push((await attempt('Someone@Example.test', `198.51.100.${index + 1}`)).status);
    // a different account from a fresh address is still answered
    const other = await attempt('other@example.test', '198.51.100.200');

    expect(statuses).toEqual([401, 401, 401, 429]);
    expect(other.status).toBe(401);
  });
});
}

function resolveSchema(spec: any, schema: any): any {
  return schema.$ref ? spec.components.schemas[schema.$ref.split('/').pop()] : schema;
}

function wrongValueFor(schema: any): unknown {
  switch (schema.type) {
    case 'string':
      return 12345;
    case 'integer':
    case 'number':
      return 'not-a-number';
    case 'boolean':
      return 'not-a-boolean';
    case 'array':
      return 'not-an-array';
    default:
      return 'not-an-object';
  }
}
