import { FakeAnthropic, requestTexts } from './support/fake-anthropic';
import { api } from './support/http';
import { readSse } from './support/sse-client';
import { createMember, startTestApp, type TestApp } from './support/test-app';

/**
 * Sandbox root is an unprivileged host uid, yet the default base stays a system it can change:
 * a Dockerfile RUN step installs a Debian package (from the Debian mirror, as a user would), and
 * the package works for exec and for Claude's Bash tool.
 */
describe('installing packages on the default base', () => {
  let fake: FakeAnthropic;
  let app: TestApp;
  let token: string;
  let user: ReturnType<typeof api>;

  beforeAll(async () => {
    fake = await FakeAnthropic.start({ delayMs: 5 });
    app = await startTestApp({ env: { ANTHROPIC_BASE_URL: fake.url, ANTHROPIC_API_KEY: 'sk-ant-test-package-install' } });
    token = (await createMember(app)).token;
    user = api(app.url, token);
  });
  afterAll(async () => {
    await app?.close({ purge: true });
    await fake?.stop();
  });

  it('runs `RUN apt-get install -y cowsay` at creation, and the package works through exec and through Claude’s Bash tool', async () => {
    const created = await user.post('/api/sandboxes', {
      volume_name: 'packages',
      dockerfile_commands: ['RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cowsay'],
    });
    expect({ status: created.status, body: created.status === 201 ? undefined : created.body }).toEqual({ status: 201 });
    const id = created.body.data.sandbox_id as string;

    const exec = await user.post(`/api/sandboxes/${id}/exec`, { command: ['sh', '-c', '/usr/games/cowsay installed && dpkg -s cowsay | grep -c "Status: install ok installed" && stat -c %U /usr/games/cowsay'] });
    expect(exec.body.data).toMatchObject({ exit_code: 0 });
    expect(exec.body.data.stdout).toContain('< installed >');
    expect(exec.body.data.stdout).toMatch(/\n1\nroot\n$/);

    fake.script([
      { content: [{ type: 'tool_use', name: 'Bash', input: { command: '/usr/games/cowsay moo', description: 'Use the installed package' } }] },
      { content: [{ type: 'text', text: 'The cow spoke.' }] },
    ]);
    const run = await user.post(`/api/sandboxes/${id}/runs`, { prompt: 'Make the cow speak' });
    expect(run.status).toBe(202);
    const { events } = await readSse(`${app.url}/api/sandboxes/${id}/runs/${run.body.data.run_id}/events`, { token });
    expect(JSON.parse(events[events.length - 1].data)).toMatchObject({ status: 'succeeded' });
    const toolResults = fake.conversationRequests.flatMap((request) => requestTexts(request.body));
    expect(toolResults.join('\n')).toContain('< moo >');
  });
});
