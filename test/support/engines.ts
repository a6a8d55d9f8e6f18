import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/**
 * The sandbox engines the API e2e suites run on: the local bubblewrap provider, and Modal through the
 * real modal@0.11.1 SDK against the fake Modal control plane (../shared/fake-modal/server.mjs beside
 * the project, one per test file, started in beforeAll and stopped in afterAll).
 *
 *     describeOnEngines('sandbox API', (engine) => {
 *       beforeAll(async () => { app = await startTestApp({ env: { ...engine.env(), … } }); });
 *       it('…', …);
 *     }, { secrets: { github: { GITHUB_TOKEN: '…' } } });
 *
 * `engine.env()` is what the service needs to run on the engine (SANDBOX_PROVIDER, the Modal
 * credentials and MODAL_SERVER_URL, the named secrets); pass it to startTestApp or startService.
 * Hooks the suite registers run between the engine's start and its stop, so the suite's afterAll
 * (terminating its sandboxes) still reaches the fake control plane.
 */
export type Engine = 'local' | 'modal';
/** Both, unless E2E_ENGINES (comma-separated) narrows them for a local run: CI runs both. */
export const ENGINES: readonly Engine[] = (['local', 'modal'] as const).filter((engine) => !process.env.E2E_ENGINES || process.env.E2E_ENGINES.split(',').includes(engine));

export const FAKE_MODAL_SERVER = resolve(__dirname, '../../../shared/fake-modal/server.mjs');
const NODE_MODULES = resolve(__dirname, '../../node_modules');
/** The pinned Claude Code CLI: on the fake it is put on every sandbox's PATH, as the real Modal image installs it. */
export const CLAUDE_BIN = join(dirname(require.resolve('@anthropic-ai/claude-code/package.json')), 'bin', 'claude.exe');

/** Statuses the fake's admin /finish takes (Modal's GenericResult status codes). */
export const MODAL_END = { success: 1, failure: 2, terminated: 3, timeout: 4, idle_timeout: 7 } as const;

/** Named secrets: `{ name: { ENV_VAR: value } }`. */
export type NamedSecrets = Record<string, Record<string, string>>;

export interface EngineOptions {
  /**
   * Named secrets the sandboxes may ask for. On the local engine they are the service's SECRETS_FILE;
   * on Modal they live in the Modal workspace (the fake's FAKE_MODAL_SECRETS) and the service has no
   * SECRETS_FILE: a secret that exists only in Modal must work.
   */
  secrets?: NamedSecrets;
}

export interface FakeModalCall {
  seq: number;
  method: string;
  status: string;
  request: any;
}

/** A sandbox as the fake's admin /state shows it. */
export interface FakeModalSandbox {
  id: string;
  tags: Record<string, string>;
  /** null while it runs; `status` is one of MODAL_END's values. */
  result: { status: number; exitcode?: number; exception?: string } | null;
  image: { env: Record<string, string>; workdir?: string; registry?: string };
  [key: string]: unknown;
}

/** One fake Modal control plane (its own state folder), as a test file's beforeAll starts it. */
export class FakeModal {
  private constructor(
    private readonly child: ChildProcess,
    private readonly stateDir: string,
    readonly port: number,
    readonly adminPort: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(options: { secrets?: NamedSecrets; env?: Record<string, string> } = {}): Promise<FakeModal> {
    // No silent skip: the Modal variants need the fake beside the project, in CI as here.
    if (!existsSync(FAKE_MODAL_SERVER)) throw new Error(`the fake Modal control plane is missing: ${FAKE_MODAL_SERVER} (../shared/fake-modal beside the project)`);
    const stateDir = mkdtempSync(join(tmpdir(), 'mss-fake-modal-'));
    const secretsFile = join(stateDir, 'secrets.json');
    writeFileSync(secretsFile, JSON.stringify(options.secrets ?? {}));
    const child = spawn(process.execPath, [FAKE_MODAL_SERVER], {
      env: {
        ...process.env,
        MODAL_SDK_NODE_MODULES: NODE_MODULES,
        FAKE_MODAL_STATE: join(stateDir, 'state'),
        FAKE_MODAL_SECRETS: secretsFile,
        FAKE_MODAL_CLAUDE_BIN: CLAUDE_BIN,
        ...options.env,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let text = '';
    await new Promise<void>((done, fail) => {
      child.once('exit', (code) => fail(new Error(`fake Modal (${FAKE_MODAL_SERVER}) exited with ${code}`)));
      child.once('error', fail);
      child.stdout!.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (/FAKE_MODAL_ADMIN_PORT=\d+/.test(text)) done();
      });
    });
    child.removeAllListeners('exit');
    return new FakeModal(child, stateDir, Number(/FAKE_MODAL_PORT=(\d+)/.exec(text)![1]), Number(/FAKE_MODAL_ADMIN_PORT=(\d+)/.exec(text)![1]));
  }

  /** Every RPC the SDK made (secrets redacted), optionally only those whose method contains `method`. */
  async calls(method = '', since = 0): Promise<FakeModalCall[]> {
    const all = (await this.admin('GET', `/calls?since=${since}`)) as FakeModalCall[];
    return all.filter((call) => call.method.toLowerCase().includes(method.toLowerCase()));
  }

  async seq(): Promise<number> {
    return ((await this.admin('GET', '/seq')) as { seq: number }).seq;
  }

  async state(): Promise<any> {
    return this.admin('GET', '/state');
  }

  /** A Modal sandbox by its id, as the fake's /state shows it. */
  async sandbox(providerSandboxId: string): Promise<FakeModalSandbox> {
    const found = ((await this.state()).sandboxes as FakeModalSandbox[]).find((sandbox) => sandbox.id === providerSandboxId);
    if (!found) throw new Error(`fake Modal: no sandbox ${providerSandboxId}`);
    return found;
  }

  /** A running Modal sandbox that no row of the service accounts for. */
  async orphan(appName: string, tags: Record<string, string>): Promise<string> {
    return ((await this.admin('POST', '/orphan', { appName, tags })) as { sandboxId: string }).sandboxId;
  }

  /** The Modal sandbox of the service's sandbox (the service tags each with its sandbox_id). */
  async sandboxOf(sandboxId: string): Promise<FakeModalSandbox> {
    const found = ((await this.state()).sandboxes as FakeModalSandbox[]).filter((sandbox) => sandbox.tags.sandbox_id === sandboxId);
    if (found.length !== 1) throw new Error(`fake Modal: ${found.length} sandboxes tagged sandbox_id=${sandboxId}`);
    return found[0];
  }

  /** Ends the Modal sandbox as Modal itself would (its lifetime, its idle timeout, …). */
  async finish(providerSandboxId: string, status: keyof typeof MODAL_END): Promise<void> {
    await this.admin('POST', '/finish', { sandboxId: providerSandboxId, status: MODAL_END[status] });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = once(this.child, 'exit');
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.stateDir, { recursive: true, force: true });
  }

  private async admin(method: string, path: string, body?: unknown): Promise<unknown> {
    const response = await fetch(`http://127.0.0.1:${this.adminPort}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    const parsed = await response.json();
    if (!response.ok) throw new Error(`fake Modal admin ${method} ${path}: ${response.status} ${JSON.stringify(parsed)}`);
    return parsed;
  }
}

/** One engine of a parametrised suite: its name, its fake control plane (Modal), and the service env for it. */
export class EngineUnderTest {
  private fakeModal?: FakeModal;
  private secretsDir?: string;
  private savedLogLevel?: string;

  constructor(
    readonly name: Engine,
    private readonly options: EngineOptions = {},
  ) {}

  get isModal(): boolean {
    return this.name === 'modal';
  }

  /** The fake Modal control plane of this file (Modal only). */
  get fake(): FakeModal {
    if (!this.fakeModal) throw new Error(`the ${this.name} engine has no fake Modal control plane (or it is not started yet)`);
    return this.fakeModal;
  }

  /** Picks the value for this engine: where the engines legitimately differ, the suite says so with this. */
  pick<T>(values: Record<Engine, T>): T {
    return values[this.name];
  }

  /** The environment the service needs to run its sandboxes on this engine. */
  env(): Record<string, string> {
    const secretsFile: Record<string, string> = this.secretsDir ? { SECRETS_FILE: join(this.secretsDir, 'secrets.json') } : {};
    if (!this.isModal) return { SANDBOX_PROVIDER: 'local', ...secretsFile };
    return { SANDBOX_PROVIDER: 'modal', MODAL_SERVER_URL: this.fake.url, MODAL_TOKEN_ID: 'ak-test', MODAL_TOKEN_SECRET: 'as-test' };
  }

  async start(): Promise<void> {
    if (!this.isModal) {
      if (this.options.secrets) {
        this.secretsDir = mkdtempSync(join(tmpdir(), 'mss-secrets-'));
        writeFileSync(join(this.secretsDir, 'secrets.json'), JSON.stringify(this.options.secrets));
      }
      return;
    }
    this.fakeModal = await FakeModal.start({ secrets: this.options.secrets });
    // The SDK reads its server address from the process environment, not from the service's
    // configuration: an app started in this process (startTestApp) needs it there too.
    process.env.MODAL_SERVER_URL = this.fakeModal.url;
    // The SDK warns on every exec that it skips TLS verification for the local command router;
    // in this process only errors. (A service started with startService logs its warnings, and the
    // restart suite reads them.)
    this.savedLogLevel = process.env.MODAL_LOGLEVEL;
    process.env.MODAL_LOGLEVEL = 'error';
  }

  async stop(): Promise<void> {
    if (this.secretsDir) rmSync(this.secretsDir, { recursive: true, force: true });
    if (!this.fakeModal) return;
    if (process.env.MODAL_SERVER_URL === this.fakeModal.url) delete process.env.MODAL_SERVER_URL;
    if (this.savedLogLevel === undefined) delete process.env.MODAL_LOGLEVEL;
    else process.env.MODAL_LOGLEVEL = this.savedLogLevel;
    await this.fakeModal.stop();
    this.fakeModal = undefined;
  }
}

/**
 * The suite once per engine (`${name} on the local engine`, `${name} on the modal engine`), with the
 * same test bodies. `engines` narrows the list (e.g. a postgres variant that runs on local only).
 */
export function describeOnEngines(name: string, suite: (engine: EngineUnderTest) => void, options: EngineOptions & { engines?: readonly Engine[] } = {}): void {
  for (const engineName of (options.engines ?? ENGINES).filter((engine) => ENGINES.includes(engine))) {
    describe(`${name} on the ${engineName} engine`, () => {
      const engine = new EngineUnderTest(engineName, options);
      beforeAll(() => engine.start(), 60_000);
      suite(engine);
      // Registered after the suite's own hooks: jest-circus runs afterAll hooks in declaration order.
      afterAll(() => engine.stop(), 30_000);
    });
  }
}

/** `it` on the engines where the behaviour exists; elsewhere an it.skip whose name says why. */
export function itOn(engine: EngineUnderTest, engines: readonly Engine[], reason: string): jest.It {
  if (engines.includes(engine.name)) return it;
  const skip = ((name: string, ...rest: unknown[]) => (it.skip as (...args: unknown[]) => void)(`${name} — not on ${engine.name}: ${reason}`, ...rest)) as unknown as jest.It;
  return Object.assign(skip, { each: (table: unknown) => (name: string, ...rest: unknown[]) => (it.skip.each as any)(table)(`${name} — not on ${engine.name}: ${reason}`, ...rest) }) as jest.It;
}
