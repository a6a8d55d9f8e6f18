import { transformFileSync } from '@swc/core';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DroppingLogDestination, type LogWriter } from './log-destination';

/** A writer whose behaviour the test sets: accept everything, part of it, or fail with an errno code. */
class ScriptedWriter implements LogWriter {
  readonly name = 'test (a fake)';
  written = '';
  attempts = 0;
  failWith?: string;
  /** Bytes accepted per call; everything when undefined. */
  acceptAtMost?: number;

  write(bytes: Buffer): number {
    this.attempts++;
    if (this.failWith) throw Object.assign(new Error(`${this.failWith}: scripted failure, write`), { code: this.failWith });
    const accepted = bytes.subarray(0, this.acceptAtMost ?? bytes.length);
    this.written += accepted.toString('utf8');
    return accepted.length;
  }

  lines(): string[] {
    return this.written.split('\n').filter(Boolean);
  }
}

const line = (n: number) => `${JSON.stringify({ level: 30, n, msg: 'x'.repeat(80) })}\n`;

describe('DroppingLogDestination', () => {
  let writer: ScriptedWriter;
  let warnings: string[];
  let clock: number;
  let destination: DroppingLogDestination;

  beforeEach(() => {
    jest.useFakeTimers();
    writer = new ScriptedWriter();
    warnings = [];
    clock = 1_000_000;
    destination = new DroppingLogDestination({
      writer,
      maxBufferedBytes: 1_000,
      warn: (message) => warnings.push(message),
      warnIntervalMs: 10_000,
      retryDelayMs: 1_000,
      now: () => clock,
    });
  });
  afterEach(() => jest.useRealTimers());

  /** Moves the injected clock and the fake timers together. */
  const advance = (ms: number) => {
    clock += ms;
    jest.advanceTimersByTime(ms);
  };

  it('writes each line through at once while the destination takes them', () => {
    destination.write(line(1));
    destination.write(line(2));

    expect(writer.lines().map((text) => JSON.parse(text).n)).toEqual([1, 2]);
    expect(destination.stats()).toEqual({ droppedLines: 0, bufferedBytes: 0 });
    expect(warnings).toEqual([]);
  });

  it('finishes a line the destination took only part of, in order', () => {
    writer.acceptAtMost = 7;

    destination.write(line(1));
    destination.write(line(2));

    expect(writer.written).toBe(line(1) + line(2));
  });

  it('on a full disk keeps lines up to the cap, drops and counts the rest, and warns once saying so', () => {
    writer.failWith = 'ENOSPC';

    for (let n = 0; n < 30; n++) destination.write(line(n));

    const kept = Math.floor(1_000 / line(0).length);
    expect(destination.stats()).toEqual({ droppedLines: 30 - kept, bufferedBytes: kept * line(0).length, failing: 'ENOSPC' });
    // The failure is reported as it starts; the lines dropped next, in the warning after the interval.
    expect(warnings).toEqual([expect.stringContaining('log destination test (a fake) cannot be written (ENOSPC: scripted failure, write): no log line dropped yet')]);
    advance(10_000);
    expect(warnings[1]).toContain(`${30 - kept} log lines dropped since the last warning, ${30 - kept} in total`);
    expect(writer.attempts).toBe(11);
  });

  it('rate limits warnings: one at once, then one per interval summing up the dropped lines', () => {
    writer.failWith = 'ENOSPC';
    for (let n = 0; n < 30; n++) destination.write(line(n));
    advance(10_000);
    expect(warnings).toHaveLength(2);
    const droppedFirst = destination.stats().droppedLines;

    advance(3_000);
    for (let n = 0; n < 5; n++) destination.write(line(n));
    advance(3_000);
    for (let n = 0; n < 5; n++) destination.write(line(n));
    expect(warnings).toHaveLength(2);

    advance(4_000);
    expect(warnings).toHaveLength(3);
    expect(warnings[2]).toContain(`10 log lines dropped since the last warning, ${droppedFirst + 10} in total`);
  });

  it('once the destination takes bytes again, writes the kept lines, then a line explaining the gap, and says so', () => {
    writer.failWith = 'ENOSPC';
    for (let n = 0; n < 30; n++) destination.write(line(n));
    const { droppedLines } = destination.stats();

    writer.failWith = undefined;
    advance(1_000);

    const written = writer.lines().map((text) => JSON.parse(text));
    const kept = Math.floor(1_000 / line(0).length);
    expect(written.slice(0, kept).map((entry) => entry.n)).toEqual([...Array(kept).keys()]);
    expect(written[kept]).toMatchObject({ level: 40, dropped_log_lines: droppedLines, msg: expect.stringContaining('dropped') });
    expect(destination.stats()).toEqual({ droppedLines, bufferedBytes: 0 });

    advance(10_000);
    expect(warnings.at(-1)).toContain('is written again');
    destination.write(line(99));
    expect(JSON.parse(writer.lines().at(-1)!).n).toBe(99);
  });

  it('retries on a timer only, not on every new line, while the destination fails', () => {
    writer.failWith = 'ENOSPC';
    for (let n = 0; n < 5; n++) destination.write(line(n));
    expect(writer.attempts).toBe(1);

    advance(1_000);
    expect(writer.attempts).toBe(2);
  });

  it('drops what it kept when the destination is gone (closed pipe), and keeps counting', () => {
    destination.write(line(0));
    writer.failWith = 'EPIPE';

    destination.write(line(1));
    destination.write(line(2));
    advance(1_000);

    expect(destination.stats()).toEqual({ droppedLines: 2, bufferedBytes: 0, failing: 'EPIPE' });
    expect(warnings[0]).toContain('EPIPE');
  });

  it('treats a slow reader (EAGAIN) as backpressure: keeps lines without a warning until some are dropped', () => {
    writer.failWith = 'EAGAIN';
    destination.write(line(1));
    expect(warnings).toEqual([]);

    writer.failWith = undefined;
    advance(1_000);
    expect(writer.lines()).toHaveLength(1);
    expect(warnings).toEqual([]);
  });

  it('at close counts what is still kept as dropped and warns at once, whatever the interval', () => {
    writer.failWith = 'ENOSPC';
    destination.write(line(1));
    destination.write(line(2));

    destination.close();

    expect(destination.stats().droppedLines).toBe(2);
    expect(warnings).toHaveLength(2);
    expect(warnings[1]).toContain('2 log lines dropped');
    expect(warnings[1]).toContain('exiting');
    expect(destination.write(line(3))).toBe(false);
  });

  it('never throws to the logger, even when the warning itself cannot be written', () => {
    const failingWarn = new DroppingLogDestination({
      writer: Object.assign(new ScriptedWriter(), { failWith: 'EIO' }),
      maxBufferedBytes: 100,
      warn: () => {
        throw new Error('stderr is gone');
      },
    });

    expect(() => {
      for (let n = 0; n < 10; n++) failingWarn.write(line(n));
      failingWarn.close();
    }).not.toThrow();
  });
});

/**
 * The real stdout destination in its own process, its stdout on a destination that cannot take
 * lines: the process writes 20 MB of log lines, and must finish and exit by itself. Were a write to
 * block, the child would hang; the test kills it and fails.
 */
describe('stdoutLogDestination in a process whose stdout is stuck', () => {
  let dir: string;
  let script: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mss-log-destination-'));
    // The module imports node built-ins only: compiled by SWC, as Jest does, it runs on its own.
    writeFileSync(join(dir, 'log-destination.js'), transformFileSync(join(__dirname, 'log-destination.ts'), { module: { type: 'commonjs' }, jsc: { target: 'es2022', parser: { syntax: 'typescript' } } }).code);
    script = join(dir, 'writer.js');
    writeFileSync(
      script,
      `const { stdoutLogDestination } = require('./log-destination.js');
const destination = stdoutLogDestination(1024 * 1024);
const line = JSON.stringify({ level: 30, msg: 'y'.repeat(200) }) + '\\n';
for (let i = 0; i < 100000; i++) destination.write(line);
process.stderr.write('STATS ' + JSON.stringify(destination.stats()) + '\\n');
`,
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function runWithStdout(stdout: number | 'pipe'): Promise<{ code: number | null; stats: { droppedLines: number; bufferedBytes: number; failing?: string }; stderr: string }> {
    const child = spawn(process.execPath, [script], { cwd: dir, stdio: ['ignore', stdout, 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const [code, signal] = await once(child, 'exit');
    clearTimeout(killer);
    if (signal) throw new Error(`the writer did not finish by itself (killed by ${signal}): a log write blocked\n${stderr}`);
    const stats = JSON.parse(/^STATS (.*)$/m.exec(stderr)?.[1] ?? 'null');
    return { code, stats, stderr };
  }

  it('a pipe (FIFO) nobody reads: lines beyond the cap are dropped and counted, and the process exits', async () => {
    const fifo = join(dir, 'fifo');
    spawnSync('mkfifo', [fifo]);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writerFd = openSync(fifo, constants.O_WRONLY); // blocking, like a shell's `| reader`
    try {
      const { code, stats, stderr } = await runWithStdout(writerFd);

      expect(code).toBe(0);
      expect(stats.droppedLines).toBeGreaterThan(0);
      expect(stats.bufferedBytes).toBeLessThanOrEqual(1024 * 1024);
      expect(stderr).toMatch(/warning: log destination stdout \(a pipe\).*log lines dropped/);
    } finally {
      closeSync(writerFd);
      closeSync(reader);
    }
  });

  it('a socket nobody reads (a child process pipe, a log shipper): the same', async () => {
    const { code, stats, stderr } = await runWithStdout('pipe');

    expect(code).toBe(0);
    expect(stats.droppedLines).toBeGreaterThan(0);
    expect(stderr).toMatch(/warning: log destination stdout \(a socket\).*log lines dropped/);
  });

  it('a full disk (/dev/full): every line refused with ENOSPC is counted, the process exits', async () => {
    const full = openSync('/dev/full', 'w');
    try {
      const { code, stats, stderr } = await runWithStdout(full);

      expect(code).toBe(0);
      expect(stats).toMatchObject({ failing: 'ENOSPC' });
      expect(stats.droppedLines).toBeGreaterThan(90_000);
      expect(stderr).toContain('ENOSPC');
      // The exit warning counts every line: none was written.
      expect(stderr).toMatch(/100000 in total; the service is exiting/);
    } finally {
      closeSync(full);
    }
  });
});
