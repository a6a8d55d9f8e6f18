import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { ClaudeInvocation } from '../../src/integrations/claude/claude-cli.invocation';
import { ParsedLine, StreamJsonReader } from '../../src/integrations/claude/stream-json-reader';

/** PATH of a minimal machine; the CLI needs a shell on it for its Bash tool. */
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ClaudeCliPlace {
  /** The CLI binary that replaces argv[0] (`claude`). */
  bin: string;
  cwd: string;
  /** HOME of the process; a fresh one stands for a new sandbox. */
  home: string;
}

export interface ClaudeCliExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  durationMs: number;
}

/**
 * The real Claude Code CLI started the way a sandbox starts it: argv without a shell, stdin
 * closed (an open stdin makes it wait 3 s for piped input), only the invocation's environment plus
 * PATH, HOME and a private temp dir (it writes sockets and probes under $CLAUDE_CODE_TMPDIR, else /tmp).
 */
export class ClaudeCliProcess {
  /** stdout lines parsed so far, in order. */
  readonly lines: ParsedLine[] = [];
  readonly exited: Promise<ClaudeCliExit>;
  private readonly child: ChildProcess;

  constructor(invocation: ClaudeInvocation, place: ClaudeCliPlace) {
    const startedAt = Date.now();
    const env = { PATH: SYSTEM_PATH, HOME: place.home, CLAUDE_CODE_TMPDIR: join(place.home, 'tmp'), ...invocation.env, ...invocation.secretEnv };
    this.child = spawn(place.bin, invocation.argv.slice(1), { cwd: place.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const reader = new StreamJsonReader();
    let stderr = '';
    this.child.stdout!.on('data', (chunk: Buffer) => this.lines.push(...reader.push(chunk)));
    this.child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    this.exited = new Promise((resolve, reject) => {
      this.child.on('error', reject);
      this.child.on('close', (code, signal) => {
        this.lines.push(...reader.end());
        resolve({ code, signal, stderr, durationMs: Date.now() - startedAt });
      });
    });
  }

  /** The stream-json objects (system, assistant, user, stream_event, result) so far. */
  get events(): Array<Record<string, unknown> & { type: string }> {
    return this.lines.flatMap((line) => (line.kind === 'json' ? [{ ...line.payload, type: line.type }] : []));
  }

  get result(): (Record<string, unknown> & { type: string }) | undefined {
    return this.events.find((event) => event.type === 'result');
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

/** Runs the CLI to completion; kills it after timeoutMs so that a hung run fails the test instead of the suite. */
export async function runClaudeCli(
  invocation: ClaudeInvocation,
  place: ClaudeCliPlace,
  timeoutMs = 60_000,
): Promise<ClaudeCliProcess & { exit: ClaudeCliExit }> {
  const cli = new ClaudeCliProcess(invocation, place);
  const timer = setTimeout(() => cli.kill(), timeoutMs);
  const exit = await cli.exited.finally(() => clearTimeout(timer));
  return Object.assign(cli, { exit });
}
