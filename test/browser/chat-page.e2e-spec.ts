import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Browser, BrowserContext, chromium, Page, Route } from 'playwright-core';
import { FakeAnthropic } from '../support/fake-anthropic';
import { startTestApp, TestApp } from '../support/test-app';

/**
 * The chat page in a real Chromium against the real service (local bubblewrap sandboxes, the real
 * Claude Code CLI) with the fake model API. The steps build on each other like a user session:
 * sign in, create a sandbox, chat, browse files, snapshot, reload, lose the connection, receive
 * hostile output, cancel a run, use a phone, terminate, sign out. Screenshots go to docs/screenshots.
 */
jest.setTimeout(240_000);

const SCREENSHOTS = join(__dirname, '..', '..', 'docs', 'screenshots');
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const RUN_TIMEOUT = 90_000;
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 375, height: 740 };

const FIRST_TEXT = 'Sure, I will write a greeting into the workspace for you';
const FILE_CONTENT = 'Hello from the sandbox!\nThis file was written by the agent.\n';
const SECOND_TEXT = 'Done: **greeting.txt** now holds the greeting.\n\n```python\nprint(open("greeting.txt").read())\n```';
const LONG_TEXT = Array.from({ length: 24 }, (_, index) => `word${String(index + 1).padStart(2, '0')}`).join(' ');
const XSS_TEXT = [
  'Here are some tricks:',
  '<img src=x onerror="window.__xss=1">',
  '<script>window.__xss=1</script>',
  '[click](javascript:window.__xss=1)',
  '<a href="javascript:window.__xss=1">raw link</a>',
].join('\n\n');
const XSS_FILE_CONTENT = '<img src=x onerror="window.__xss=2">';

describe('chat page in a real browser', () => {
  let fake: FakeAnthropic;
  let app: TestApp;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    fake = await FakeAnthropic.start({ delayMs: 40, piecesPerBlock: 8 });
    app = await startTestApp({ env: { ANTHROPIC_BASE_URL: fake.url, ANTHROPIC_API_KEY: 'sk-ant-fake-key-for-tests' } });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
    context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
    page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(error.message));
  });

  afterEach(() => {
    expect(pageErrors).toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close({ purge: true });
    await fake?.stop();
  });

  const lastRun = () => page.getByTestId('run').last();
  const waitForLastRunToFinish = () => expectAttribute(lastRun(), 'data-status', /succeeded|failed|cancelled|timed_out|interrupted/);

  async function sendPrompt(text: string): Promise<void> {
    const prompt = page.getByTestId('prompt');
    await expectEnabled(prompt);
    await prompt.fill(text);
    await prompt.press('Enter');
    await page.getByTestId('user-prompt').filter({ hasText: text }).waitFor();
  }

  it('signs in with email and password, explaining a wrong password', async () => {
    await page.goto(app.url);
    await page.getByLabel('Email').waitFor();
    await page.screenshot({ path: join(SCREENSHOTS, 'login.png') });

    await page.getByLabel('Email').fill(app.adminEmail);
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expectText(page.getByTestId('login-error'), 'Wrong email or password.');

    await page.getByLabel('Password').fill(app.adminPassword);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expectText(page.getByTestId('user-email'), app.adminEmail);
    expect(await page.evaluate('Object.keys(sessionStorage)')).toEqual(['mss.access_token']);
  });

  it('creates a sandbox, showing progress until it runs', async () => {
    let releaseCreate!: () => void;
    const createHeld = new Promise<void>((resolve) => (releaseCreate = resolve));
    await page.route('**/api/sandboxes', async (route: Route) => {
      if (route.request().method() === 'POST') await createHeld;
      await route.fallback();
    });

    await page.getByTestId('new-sandbox').click();
    await page.getByLabel('Volume name').fill('e2e-chat');
    // The RUN step keeps the create busy long enough for the page to show which step it builds.
    await page.getByLabel('Dockerfile commands').fill('ENV GREETING=hello\nRUN sleep 2');
    await page.getByRole('button', { name: 'Create sandbox' }).click();
    await page.getByTestId('create-progress').waitFor();
    releaseCreate();
    await expectText(page.getByTestId('create-progress').getByRole('status'), 'Building step 1 of 1');
    await expectAttribute(page.getByTestId('create-progress-bar'), 'max', '1');
    await expectAttribute(page.getByTestId('create-progress-bar'), 'value', '1');

    await page.getByTestId('create-dialog').waitFor({ state: 'hidden', timeout: 60_000 });
    await page.unroute('**/api/sandboxes');
    const item = page.getByTestId('sandbox-item').first();
    await expectAttribute(item, 'data-status', 'running');
    await expectAttribute(item, 'aria-current', 'true');
    await expectText(page.getByTestId('sandbox-status').first(), 'Running');
    await expectEnabled(page.getByTestId('prompt'));
  });

  it('streams the reply, shows the tool call, and lets the user browse to the file it wrote and download it', async () => {
    const sandbox = await currentSandbox(page, app);
    fake.script([
      { content: [{ type: 'text', text: FIRST_TEXT }, { type: 'tool_use', name: 'Write', input: { file_path: `${sandbox.volume_mount_path}/notes/greeting.txt`, content: FILE_CONTENT } }] },
      { content: [{ type: 'text', text: SECOND_TEXT }] },
    ]);

    await sendPrompt('Please write a greeting file');
    expect(await page.getByTestId('prompt').isDisabled()).toBe(true);
    await page.getByTestId('cancel-run').waitFor();

    // A function, not a string: the page's CSP forbids eval, which a string predicate would need.
    const partial = await page.waitForFunction(() => {
      const streaming = (globalThis as any).document.querySelector('[data-testid="assistant-text"][data-state="streaming"]');
      return streaming?.textContent.trim() || null;
    }, undefined, {
      timeout: RUN_TIMEOUT,
      polling: 'raf',
    });
    const partialText = (await partial.jsonValue()) as string;
    expect(FIRST_TEXT.startsWith(partialText)).toBe(true);
    expect(partialText.length).toBeLessThan(FIRST_TEXT.length);

    await waitForLastRunToFinish();
    const run = lastRun();
    expect(await run.getAttribute('data-status')).toBe('succeeded');
    expect(await run.getByTestId('assistant-text').allTextContents()).toEqual([FIRST_TEXT, expect.stringContaining('greeting.txt now holds the greeting.')]);
    expect(await run.locator('.code-block code.language-python').textContent()).toBe('print(open("greeting.txt").read())\n');

    const tool = run.getByTestId('tool-call');
    expect(await tool.count()).toBe(1);
    await expectAttribute(tool, 'data-state', 'done');
    await tool.locator('summary').click();
    expect(await tool.getByTestId('tool-input').textContent()).toContain(FILE_CONTENT.split('\n')[0]);
    expect(await tool.getByTestId('tool-result').textContent()).toContain('File created successfully');
    expect(await run.getByTestId('run-cost').textContent()).toMatch(/^\$\d+\.\d{4}$/);
    expect(await run.getByTestId('run-tokens').textContent()).toMatch(/\d+ in · \d+ out tokens/);
    await expectEnabled(page.getByTestId('prompt'));
    expect(await page.getByTestId('cancel-run').isHidden()).toBe(true);
    await page.getByTestId('toast').waitFor({ state: 'hidden' });
    await page.screenshot({ path: join(SCREENSHOTS, 'chat.png') });

    await page.getByRole('tab', { name: 'Files' }).click();
    await page.locator('[data-testid="file-entry"][data-path="notes"][data-type="directory"]').getByRole('button', { name: 'notes' }).click();
    const entry = page.locator('[data-testid="file-entry"][data-path="notes/greeting.txt"]');
    await entry.waitFor();
    await expectText(page.getByTestId('file-breadcrumbs').locator('[aria-current="location"]'), 'notes');
    await page.screenshot({ path: join(SCREENSHOTS, 'files.png') });
    const [download] = await Promise.all([page.waitForEvent('download'), entry.getByRole('button', { name: 'Download greeting.txt' }).click()]);
    expect(download.suggestedFilename()).toBe('greeting.txt');
    expect(readFileSync(await download.path(), 'utf8')).toBe(FILE_CONTENT);
  });

  it('uploads a file into the current folder and goes back up via the breadcrumbs', async () => {
    await page.getByTestId('file-upload').setInputFiles({ name: 'todo.md', mimeType: 'text/markdown', buffer: Buffer.from('# To do\n') });
    await expectText(page.getByTestId('files-status'), 'Uploaded notes/todo.md');
    await page.locator('[data-testid="file-entry"][data-path="notes/todo.md"]').waitFor();

    await page.getByTestId('file-breadcrumbs').getByRole('button', { name: 'e2e-chat' }).click();
    await page.locator('[data-testid="file-entry"][data-path="notes"]').waitFor();
    expect(await page.locator('[data-testid="file-entry"][data-path="notes/todo.md"]').count()).toBe(0);
  });

  it('saves a snapshot on request and lists it', async () => {
    await page.getByRole('tab', { name: 'Snapshots' }).click();
    await page.getByRole('button', { name: 'Snapshot now' }).click();
    await expectText(page.getByTestId('snapshot-result'), /Saved snapshot v\d+: \d+ files? /);
    const version = /v(\d+)/.exec((await page.getByTestId('snapshot-result').textContent())!)![1];
    await page.locator(`[data-testid="snapshot-entry"][data-version="${version}"]`).waitFor();
    await page.screenshot({ path: join(SCREENSHOTS, 'snapshots.png') });
    await page.getByRole('tab', { name: 'Chat' }).click();
  });

  it('shows the whole conversation again after a reload', async () => {
    await page.reload();
    await waitForLastRunToFinish();
    const run = lastRun();
    expect(await page.getByTestId('run').count()).toBe(1);
    expect(await run.getByTestId('user-prompt').textContent()).toBe('Please write a greeting file');
    expect(await run.getByTestId('assistant-text').allTextContents()).toEqual([FIRST_TEXT, expect.stringContaining('greeting.txt now holds the greeting.')]);
    expect(await run.getByTestId('tool-call').count()).toBe(1);
    await expectAttribute(run.getByTestId('tool-call'), 'data-state', 'done');
    expect(await run.getByTestId('run-cost').textContent()).toMatch(/^\$/);
  });

  it('resumes a stream cut mid-run from the last event, without missing or repeating text', async () => {
    fake.script([{ content: [{ type: 'text', text: LONG_TEXT }], delayMs: 150 }]);
    const resumeHeaders: Array<string | undefined> = [];
    let cutAfterId: string | undefined;
    await page.route('**/runs/*/events*', async (route: Route) => {
      if (cutAfterId === undefined) {
        const { body, lastId } = await readUntilTextDeltas(route, 2);
        cutAfterId = lastId;
        // The answer ends in the middle of an event, as a dropped connection would.
        await route.fulfill({ status: 200, headers: { 'content-type': 'text/event-stream' }, body: `${body}id: 999\nevent: stream_event\ndata: {"type":"stre` });
        return;
      }
      resumeHeaders.push(route.request().headers()['last-event-id']);
      // Make the server replay everything: the page itself must drop what it already showed.
      const headers = { ...route.request().headers() };
      delete headers['last-event-id'];
      await route.continue({ headers });
    });

    await sendPrompt('Count some words');
    await waitForLastRunToFinish();
    await page.unroute('**/runs/*/events*');

    expect(resumeHeaders.length).toBeGreaterThan(0);
    expect(resumeHeaders[0]).toBe(cutAfterId);
    expect(await lastRun().getAttribute('data-status')).toBe('succeeded');
    expect(await lastRun().getByTestId('assistant-text').allTextContents()).toEqual([LONG_TEXT]);
  });

  it('keeps hostile model output inert', async () => {
    const sandbox = await currentSandbox(page, app);
    fake.script([
      { content: [{ type: 'text', text: XSS_TEXT }, { type: 'tool_use', name: 'Write', input: { file_path: `${sandbox.volume_mount_path}/trap.html`, content: XSS_FILE_CONTENT } }] },
      { content: [{ type: 'text', text: 'Wrote <b onmouseover="window.__xss=3">trap.html</b>.' }] },
    ]);
    await sendPrompt('Show me some HTML tricks');
    await waitForLastRunToFinish();
    const run = lastRun();
    await run.getByTestId('tool-call').locator('summary').click();
    await page.mouse.move(0, 0);
    await run.getByText('trap.html', { exact: true }).last().hover();

    expect(await page.evaluate('typeof window.__xss')).toBe('undefined');
    expect(await page.locator('[href^="javascript:" i]').count()).toBe(0);
    const history = page.getByTestId('chat-history');
    expect(await history.locator('script, img, [onerror], [onmouseover]').count()).toBe(0);
    expect(await run.getByTestId('assistant-text').first().textContent()).toContain('click');
    expect(await run.getByTestId('tool-input').textContent()).toContain(XSS_FILE_CONTENT);
  });

  it('keeps Shift+Enter for new lines and cancels a running reply', async () => {
    fake.script([{ content: [{ type: 'text', text: LONG_TEXT }], delayMs: 1_000 }]);
    const runsBefore = await page.getByTestId('run').count();
    const prompt = page.getByTestId('prompt');
    await prompt.fill('first line');
    await prompt.press('Shift+Enter');
    await prompt.pressSequentially('second line');
    expect(await prompt.inputValue()).toBe('first line\nsecond line');
    expect(await page.getByTestId('run').count()).toBe(runsBefore);

    await prompt.press('Enter');
    await expectText(lastRun().getByTestId('user-prompt'), 'first line\nsecond line');
    await lastRun().locator('[data-testid="assistant-text"][data-state="streaming"]').waitFor({ timeout: RUN_TIMEOUT });
    await page.getByRole('button', { name: 'Cancel run' }).click();

    await expectAttribute(lastRun(), 'data-status', 'cancelled');
    await expectText(lastRun().getByTestId('run-notice'), 'You cancelled this run.');
    expect(await lastRun().locator('[data-testid="assistant-text"][data-state="streaming"]').count()).toBe(0);
    await expectEnabled(prompt);
  });

  it('fits a phone-sized screen without horizontal scrolling', async () => {
    await page.setViewportSize(PHONE);
    await page.getByTestId('prompt').waitFor();
    await expectNoHorizontalScroll(page);
    await page.screenshot({ path: join(SCREENSHOTS, 'phone.png') });

    await page.getByRole('tab', { name: 'Files' }).click();
    await page.getByTestId('file-entry').first().waitFor();
    await expectNoHorizontalScroll(page);

    await page.getByRole('button', { name: 'Back to the sandbox list' }).click();
    await page.getByTestId('sandbox-item').first().waitFor();
    await expectNoHorizontalScroll(page);
    await page.getByTestId('sandbox-item').first().click();
    await page.setViewportSize(DESKTOP);
  });

  it('terminates the sandbox after a confirmation and offers a new one', async () => {
    await page.getByRole('tab', { name: 'Chat' }).click();
    await page.getByRole('button', { name: 'Terminate…' }).click();
    const dialog = page.getByTestId('terminate-dialog');
    await dialog.waitFor();
    expect(await dialog.getByLabel('Save a snapshot first').isChecked()).toBe(true);
    await dialog.getByRole('button', { name: 'Terminate', exact: true }).click();

    await dialog.waitFor({ state: 'hidden', timeout: 60_000 });
    await expectText(page.getByTestId('sandbox-notice'), /This sandbox has ended/);
    await expectAttribute(page.getByTestId('sandbox-item').first(), 'data-status', 'terminated');
    expect(await page.getByTestId('composer').isHidden()).toBe(true);

    await page.getByTestId('create-replacement').click();
    const createDialog = page.getByTestId('create-dialog');
    await createDialog.waitFor();
    expect(await createDialog.getByLabel('Volume name').inputValue()).toBe('e2e-chat');
    await createDialog.getByRole('button', { name: 'Close' }).click();
  });

  it('signs out, forgetting the token', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Email').waitFor();
    expect(await page.evaluate('Object.keys(sessionStorage)')).toEqual([]);
    await page.reload();
    await page.getByLabel('Email').waitFor();
    expect(await page.getByTestId('sandbox-list').isHidden()).toBe(true);
  });
});

interface SandboxSummary {
  sandbox_id: string;
  volume_mount_path: string;
}

/** The sandbox the page shows, as the API describes it. */
async function currentSandbox(page: Page, app: TestApp): Promise<SandboxSummary> {
  const id = decodeURIComponent(new URL(page.url()).hash.replace('#/sandboxes/', ''));
  const response = await fetch(`${app.url}/api/sandboxes/${id}`, { headers: { authorization: `Bearer ${app.adminToken}` } });
  expect(response.status).toBe(200);
  return ((await response.json()) as { data: SandboxSummary }).data;
}

/** Fetches the intercepted event stream itself and keeps the complete events up to the nth text delta. */
async function readUntilTextDeltas(route: Route, count: number): Promise<{ body: string; lastId: string }> {
  const request = route.request();
  const response = await fetch(request.url(), { headers: { authorization: request.headers()['authorization'], accept: 'text/event-stream' } });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  let body = '';
  let lastId = '';
  let deltas = 0;
  while (deltas < count) {
    const { value, done } = await reader.read();
    if (done) throw new Error('the run ended before the stream could be cut');
    buffered += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffered.indexOf('\n\n')) !== -1 && deltas < count) {
      const event = buffered.slice(0, end + 2);
      buffered = buffered.slice(end + 2);
      body += event;
      lastId = /^id: (.*)$/m.exec(event)?.[1] ?? lastId;
      if (event.includes('"text_delta"')) deltas += 1;
    }
  }
  await reader.cancel();
  return { body, lastId };
}

async function expectNoHorizontalScroll(page: Page): Promise<void> {
  // Evaluated in the page (the project compiles without the DOM typings).
  const overflow = await page.evaluate(`
    [document.documentElement, document.body, ...document.querySelectorAll('.app, .detail, .panel, .chat-log, .sidebar')]
      .filter((element) => element.checkVisibility())
      .filter((element) => element.scrollWidth > element.clientWidth + 1)
      .map((element) => element.tagName + '.' + element.className + ': ' + element.scrollWidth + ' > ' + element.clientWidth)
  `);
  expect(overflow).toEqual([]);
}

async function expectText(locator: ReturnType<Page['locator']>, expected: string | RegExp): Promise<void> {
  let text = '';
  await waitUntil(
    async () => {
      text = (await locator.isVisible()) ? ((await locator.textContent()) ?? '') : '';
      return typeof expected === 'string' ? text.includes(expected) : expected.test(text);
    },
    async () => `text ${String(expected)} in ${locator.toString()}, showing "${text}"; messages on the page: ${JSON.stringify(await visibleMessages(locator.page()))}`,
  );
}

/** What the page tells the user (errors, notices), to explain a failed wait. */
function visibleMessages(page: Page): Promise<string[]> {
  return page.locator('.message:visible, .notice:visible').allTextContents();
}

async function expectAttribute(locator: ReturnType<Page['locator']>, name: string, expected: string | RegExp): Promise<void> {
  await waitUntil(async () => {
    const value = (await locator.getAttribute(name, { timeout: RUN_TIMEOUT })) ?? '';
    return typeof expected === 'string' ? value === expected : expected.test(value);
  }, `${name}=${String(expected)} on ${locator.toString()}`);
}

async function expectEnabled(locator: ReturnType<Page['locator']>): Promise<void> {
  await waitUntil(() => locator.isEnabled(), `${locator.toString()} to be enabled`);
}

async function waitUntil(condition: () => Promise<boolean>, what: string | (() => string | Promise<string>), timeoutMs = RUN_TIMEOUT): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${typeof what === 'string' ? what : await what()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
