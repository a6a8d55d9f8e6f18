import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { followArgv, killArgv, runLogDir, startArgv } from './claude-run-log';

/** What a finished script did: its exit code, its output (exact bytes) and each stdout chunk as it arrived. */
interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
  chunks: string[];
  ms: number;
}

/** How a script is run: as given (the host's /bin/sh and GNU coreutils), or by busybox's sh with only busybox's applets on the PATH, as in an alpine image. */
interface Shell {
  argv(argv: string[]): string[];
  env?: NodeJS.ProcessEnv;
  dispose?(): void;
}

const HOST_SHELL: Shell = { argv: (argv) => argv };

/** busybox's applets as commands of their own (a directory of links), for the PATH of the busybox shell. */
function busyboxShell(): Shell {
  const bin = mkdtempSync(join(tmpdir(), 'claude-run-log-busybox-'));
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const applet of applets) symlinkSync(BUSYBOX, join(bin, applet));
  return {
    argv: (argv) => (argv[0] === '/bin/sh' ? [BUSYBOX, 'sh', ...argv.slice(1)] : argv),
    env: { PATH: bin },
    dispose: () => rmSync(bin, { recursive: true, force: true }),
  };
}

/** Debian's busybox-static (scripts/test-prerequisites.sh installs it). */
const BUSYBOX = '/bin/busybox';

/** Runs an argv; resolves once it exited and its output pipes closed. */
function exec(shell: Shell, argv: string[], onStdout: (chunk: string) => void = () => undefined): { done: Promise<Finished>; pid: number } {
  const began = Date.now();
  const [command, ...args] = shell.argv(argv);
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: shell.env ?? process.env });
  const stdout: Buffer[] = [];
  const stderr: Buffer[] = [];
  const chunks: string[] = [];
  child.stdout.on('data', (chunk: Buffer) => {
    stdout.push(chunk);
    chunks.push(chunk.toString('latin1'));
    onStdout(chunk.toString('latin1'));
  });
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
  const done = new Promise<Finished>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(stdout).toString('latin1'), stderr: Buffer.concat(stderr).toString(), chunks, ms: Date.now() - began }));
  });
  return { done, pid: child.pid! };
}

/** /proc/<pid>/stat: state and session, or null once the process is gone. A zombie has ended. */
function processInfo(pid: number): { state: string; session: number } | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return { state: fields[0], session: Number(fields[3]) };
  } catch {
    return null;
  }
}

const isRunning = (pid: number) => {
  const info = processInfo(pid);
  return info !== null && info.state !== 'Z';
};

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.each([
  ['the host\'s /bin/sh and GNU coreutils', () => HOST_SHELL],
  ['busybox (no tail --pid, whole-second tail -s)', busyboxShell],
])('claude-run-log scripts (%s)', (_name, makeShell) => {
  let shell: Shell;
  beforeAll(() => (shell = makeShell()));
  afterAll(() => shell.dispose?.());
  let root: string;
  /** The run's log dir; `control` is where the test tells the agent to go on. */
  let dir: string;
  let control: string;
  const leaders: number[] = [];

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'claude-run-log-spec-'));
    dir = join(root, 'run-1');
    control = join(root, 'control');
    mkdirSync(control);
  });

  afterEach(() => {
    // A failed test must not leave an agent behind.
    for (const pid of leaders.splice(0)) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(root, { recursive: true, force: true });
  });

  const file = (name: string) => readFileSync(join(dir, name), 'latin1');

  /** Starts the agent; resolves once the starter exited (with its pipes closed). */
  async function start(script: string): Promise<Finished & { leader: number }> {
    const finished = await exec(shell, startArgv(dir, ['sh', '-c', script, control])).done;
    const leader = existsSync(join(dir, 'pid')) ? Number(file('pid')) : 0;
    if (leader) leaders.push(leader);
    return { ...finished, leader };
  }

  /** An agent that prints `one`, waits for the test's go, prints to stderr and a last line without newline, and exits 3. */
  const STEPWISE = 'printf "one\\n"; while [ ! -e "$0/go" ]; do sleep 0.02; done; printf "two\\n" >&2; printf "thr€e"; exit 3';
  /** The last line's bytes as latin1 text (€ is three bytes). */
  const LAST = 'thr\xe2\x82\xace';
  /** What the wrapper appends to both logs once the agent has ended (a newline first: the last line may lack one). */
  const ENDED = '\nclaude-run-ended 3\n';
  const go = () => writeFileSync(join(control, 'go'), '');


  describe('startArgv', () => {
    it('returns once the agent runs, leaving it running detached in a session of its own, its output in the log files', async () => {
      const started = await start(STEPWISE);

      expect(started).toMatchObject({ code: 0, stdout: '', stderr: '' });
      expect(started.ms).toBeLessThan(5_000);
      expect(started.leader).toBeGreaterThan(0);
      // The agent outlives the exec that started it, in its own session (not the starter's, which is ours).
      expect(isRunning(started.leader)).toBe(true);
      expect(processInfo(started.leader)!.session).toBe(started.leader);
      expect(processInfo(started.leader)!.session).not.toBe(processInfo(process.pid)!.session);
      expect(existsSync(join(dir, 'exit'))).toBe(false);
      await until(() => file('stdout') === 'one\n', 'the agent printed its first line');

      go();
      await until(() => existsSync(join(dir, 'exit')), 'the agent exited');

      expect(file('stdout')).toBe(`one\n${LAST}${ENDED}`);
      expect(file('stderr')).toBe(`two\n${ENDED}`);
      expect(file('exit')).toBe('3\n');
      expect(existsSync(join(dir, 'started'))).toBe(true);
    }, 30_000);

    it('refuses to start a run twice (exit 125), leaving the first one alone', async () => {
      const first = await start(STEPWISE);
      await until(() => file('stdout') === 'one\n', 'the first agent printed');

      const second = await start('echo second; exit 0');

      expect(second).toMatchObject({ code: 125, stderr: 'run already started\n' });
      expect(Number(file('pid'))).toBe(first.leader);
      expect(isRunning(first.leader)).toBe(true);
      go();
      await until(() => existsSync(join(dir, 'exit')), 'the first agent exited');
      expect(file('stdout')).not.toContain('second');
      expect(file('exit')).toBe('3\n');
    }, 30_000);
  });

  describe('followArgv', () => {
    it('prints stdout from offset 0 as it is written, and exits with the agent’s exit code', async () => {
      await start(STEPWISE);
      let printed = '';
      const follower = exec(shell, followArgv(dir, 'stdout', 0), (chunk) => (printed += chunk));

      await until(() => printed === 'one\n', 'the follower printed the first line');
      // Printed while the agent still runs, before it wrote anything else.
      expect(existsSync(join(dir, 'exit'))).toBe(false);
      go();
      const finished = await follower.done;

      expect(finished.stdout).toBe(`one\n${LAST}${ENDED}`);
      expect(finished.chunks[0]).toBe('one\n');
      expect(finished.code).toBe(3);
    }, 30_000);

    it('prints exactly the bytes after a middle offset as they are written', async () => {
      await start(STEPWISE);
      await until(() => file('stdout') === 'one\n', 'the agent printed its first line');
      const fromInsideLine = exec(shell, followArgv(dir, 'stdout', 2));
      const fromEnd = exec(shell, followArgv(dir, 'stdout', 4));
      const stderr = exec(shell, followArgv(dir, 'stderr', 0));
      await new Promise((resolve) => setTimeout(resolve, 200));

      go();

      await expect(fromInsideLine.done).resolves.toMatchObject({ code: 3, stdout: `e\n${LAST}${ENDED}`, stderr: '' });
      await expect(fromEnd.done).resolves.toMatchObject({ code: 3, stdout: `${LAST}${ENDED}`, stderr: '' });
      // Following stderr ends with 0 whatever the agent's code: only stdout's follower reports it.
      await expect(stderr.done).resolves.toMatchObject({ code: 0, stdout: `two\n${ENDED}` });
    }, 30_000);

    it('prints the rest of a finished run and exits at once', async () => {
      await start(STEPWISE);
      go();
      await until(() => existsSync(join(dir, 'exit')), 'the agent exited');

      const rest = await exec(shell, followArgv(dir, 'stdout', 4)).done;
      const insideChar = await exec(shell, followArgv(dir, 'stdout', 8)).done;
      const nothingLeft = await exec(shell, followArgv(dir, 'stdout', Buffer.byteLength(`one\nthr€e${ENDED}`))).done;
      const stderr = await exec(shell, followArgv(dir, 'stderr', 0)).done;

      expect(rest).toMatchObject({ code: 3, stdout: `${LAST}${ENDED}` });
      expect(insideChar).toMatchObject({ code: 3, stdout: `\x82\xace${ENDED}` });
      expect(nothingLeft).toMatchObject({ code: 3, stdout: '' });
      expect(stderr).toMatchObject({ code: 0, stdout: `two\n${ENDED}` });
      for (const finished of [rest, insideChar, nothingLeft, stderr]) expect(finished.ms).toBeLessThan(2_000);
    }, 30_000);

    it('waits for a run to start, and gives up after 10 s (exit 126) when it never does', async () => {
      await expect(exec(shell, followArgv(dir, 'stdout', 0)).done).resolves.toMatchObject({ code: 126, stdout: '', stderr: 'the run did not start\n' });
    }, 30_000);
  });

  describe('killArgv', () => {
    it('kills the agent and the processes it started; the stdout follower then exits 137', async () => {
      const started = await start('sleep 60 & echo $! > "$0/child"; echo started; wait');
      await until(() => existsSync(join(control, 'child')) && readFileSync(join(control, 'child'), 'utf8').endsWith('\n'), 'the agent started its child');
      const child = Number(readFileSync(join(control, 'child'), 'utf8'));
      expect(isRunning(child)).toBe(true);
      const follower = exec(shell, followArgv(dir, 'stdout', 0));

      const killer = await exec(shell, killArgv(dir)).done;

      expect(killer).toMatchObject({ code: 0, stdout: '', stderr: '' });
      await until(() => !isRunning(child) && !isRunning(started.leader), 'the agent and its child ended');
      await expect(follower.done).resolves.toMatchObject({ code: 137, stdout: 'started\n' });
      expect(existsSync(join(dir, 'exit'))).toBe(false);
    }, 30_000);

    it('does nothing for a run that was never started', async () => {
      await expect(exec(shell, killArgv(dir)).done).resolves.toMatchObject({ code: 0, stdout: '', stderr: '' });
    });
  });
});

describe('runLogDir', () => {
  it('puts a run’s logs under /run/claude-runs', () => {
    expect(runLogDir('0b6f7c1e-2f4a-4c3e-9a57-3f1d2e4b5c6d')).toBe('/run/claude-runs/0b6f7c1e-2f4a-4c3e-9a57-3f1d2e4b5c6d');
  });

  it.each(['../etc', 'a/b', '..', '/abs', '', 'x'.repeat(65), 'a b', 'run;rm'])('refuses %j as a run id', (runId) => {
    expect(() => runLogDir(runId)).toThrow('not a run id');
  });
});
