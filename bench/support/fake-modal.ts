import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { realpathSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/** The fake Modal control plane shared by the project's worktrees (read-only; see its README.md). */
export const FAKE_MODAL_SERVER = resolve(__dirname, '..', '..', '..', '..', 'shared', 'fake-modal', 'server.mjs');
/** The Claude Code CLI of this project's node_modules, put on the PATH of every fake sandbox. */
export const CLAUDE_BIN = join(dirname(require.resolve('@anthropic-ai/claude-code/package.json')), 'bin', 'claude.exe');
const STOP_TIMEOUT_MS = 10_000;

/** One RPC as the fake's admin API lists it (GET /calls): request decoded, secrets redacted. */
export interface FakeModalCall {
  seq: number;
  method: string;
  request: Record<string, unknown>;
}

/**
 * The fake Modal control plane (../shared/fake-modal/server.mjs) in its own process, with a state
 * folder of its own that stop() removes. Its sandboxes are bubblewrap process trees on this host
 * (sharing its network unless blocked), so the CLI in them reaches a fake model on 127.0.0.1.
 */
export class FakeModal {
  private constructor(
    private readonly child: ChildProcess,
    private readonly stateDir: string,
    readonly url: string,
    readonly adminUrl: string,
  ) {}

  static async start(serverPath = process.env.FAKE_MODAL_SERVER ?? FAKE_MODAL_SERVER): Promise<FakeModal> {
    const stateDir = await mkdtemp(join(tmpdir(), 'fake-modal-bench-'));
    // The SDK the fake decodes with must be the one the service runs: this project's node_modules.
    const sdkNodeModules = realpathSync(resolve(dirname(require.resolve('@anthropic-ai/claude-code/package.json')), '..', '..'));
    const child = spawn(process.execPath, [serverPath], {
      env: { ...process.env, MODAL_SDK_NODE_MODULES: sdkNodeModules, FAKE_MODAL_CLAUDE_BIN: CLAUDE_BIN, FAKE_MODAL_STATE: stateDir },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let text = '';
    try {
      await new Promise<void>((done, fail) => {
        child.once('exit', (code) => fail(new Error(`the fake Modal (${serverPath}) exited with ${code}`)));
        child.stdout!.on('data', (chunk: Buffer) => {
          text += chunk.toString();
          if (/FAKE_MODAL_ADMIN_PORT=\d+/.test(text)) done();
        });
      });
    } catch (error) {
      await rm(stateDir, { recursive: true, force: true });
      throw error;
    }
    child.stdout!.resume();
    const port = /FAKE_MODAL_PORT=(\d+)/.exec(text)![1];
    const adminPort = /FAKE_MODAL_ADMIN_PORT=(\d+)/.exec(text)![1];
    return new FakeModal(child, stateDir, `http://127.0.0.1:${port}`, `http://127.0.0.1:${adminPort}`);
  }

  async calls(since = 0): Promise<FakeModalCall[]> {
    const response = await fetch(`${this.adminUrl}/calls?since=${since}`);
    return (await response.json()) as FakeModalCall[];
  }

  /** SIGTERM (the fake terminates its sandboxes), SIGKILL if it hangs; then its state folder goes. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = once(this.child, 'exit');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      this.child.kill('SIGTERM');
      await exited;
      clearTimeout(timer);
    }
    await rm(this.stateDir, { recursive: true, force: true });
  }
}
