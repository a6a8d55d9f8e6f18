import { Logger } from '@nestjs/common';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { ProviderFailureError } from '../sandbox-provider.errors';
import { EXEC_MARKER_ENV, EXEC_TIMEOUT_EXIT_CODE, killByMarkerArgv, ModalExecProcess } from './modal-exec-process';
import { byteStream, fakeProcess } from './testing/fake-modal';

const logger = new Logger('test');

async function drain(stream: Readable): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += (chunk as Buffer).toString();
  return text;
}

function clock(start = 1_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

describe('ModalExecProcess', () => {
  const noKill = () => Promise.reject(new Error('kill not expected'));

  it('reports a timeout when the SDK gives up waiting at the exec deadline', async () => {
    const time = clock();
    const process = new ModalExecProcess(
      fakeProcess({ wait: async () => (time.advance(5000), Promise.reject(new Error('Deadline exceeded while waiting for exec ex-1'))) }),
      { timeoutMs: 5000, kill: noKill, logger, now: time.now },
    );
    await Promise.all([drain(process.stdout), drain(process.stderr)]);
    await expect(process.wait()).resolves.toEqual({ exitCode: EXEC_TIMEOUT_EXIT_CODE, timedOut: true });
  });

  it('reports a process that Modal stopped at its timeout as timed out, and a quick failure as not', async () => {
    const slow = clock();
    const fast = clock();
    const stopped = new ModalExecProcess(fakeProcess({ wait: async () => (slow.advance(6000), 137) }), { timeoutMs: 5000, kill: noKill, logger, now: slow.now });
    const quick = new ModalExecProcess(fakeProcess({ wait: async () => (fast.advance(200), 1) }), { timeoutMs: 5000, kill: noKill, logger, now: fast.now });
    await Promise.all([stopped, quick].flatMap((process) => [drain(process.stdout), drain(process.stderr)]));
    await expect(stopped.wait()).resolves.toEqual({ exitCode: 137, timedOut: true });
    await expect(quick.wait()).resolves.toEqual({ exitCode: 1, timedOut: false });
  });

  it('maps a failed wait before any deadline to a provider error of the exec step', async () => {
    const process = new ModalExecProcess(fakeProcess({ wait: () => Promise.reject(new Error('stream reset')) }), { kill: noKill, logger });
    await expect(process.wait()).rejects.toBeInstanceOf(ProviderFailureError);
    await expect(process.wait()).rejects.toThrow(/^exec: stream reset/);
  });

  it('resolves wait() only once all output has been delivered', async () => {
    const process = new ModalExecProcess({ ...fakeProcess({ exitCode: 0 }), stdout: byteStream([Buffer.from('a'), Buffer.from('b')]) }, { kill: noKill, logger });
    const exit = jest.fn();
    void process.wait().then(exit);
    await new Promise((resolve) => setImmediate(resolve));
    expect(exit).not.toHaveBeenCalled();
    expect(await drain(process.stdout)).toBe('ab');
    await drain(process.stderr);
    await process.wait();
    expect(exit).toHaveBeenCalledWith({ exitCode: 0, timedOut: false });
  });

  it('ends the output quietly when the SDK stream fails, logging why', async () => {
    const warn = jest.spyOn(logger, 'warn').mockImplementation(() => undefined);
    let pulls = 0;
    const failing = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulls++ === 0) controller.enqueue(Buffer.from('partial'));
        else controller.error(new Error('connection reset'));
      },
    });
    const process = new ModalExecProcess({ ...fakeProcess({ exitCode: 0 }), stdout: failing }, { kill: noKill, logger });
    expect(await drain(process.stdout)).toBe('partial');
    expect(warn).toHaveBeenCalledWith(expect.stringContaining('connection reset'));
  });
});

describe('killByMarkerArgv (run here with the local sh)', () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  function startTree(marker: string): ChildProcess {
    // A shell with a child of its own; both inherit the marker.
    const child = spawn('sh', ['-c', 'sleep 30 & wait'], { env: { ...process.env, [EXEC_MARKER_ENV]: marker }, stdio: 'ignore' });
    children.push(child);
    return child;
  }

  it('kills every process carrying the marker and nothing else', async () => {
    const target = startTree('marker-target');
    const bystander = startTree('marker-bystander');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const [command, ...args] = killByMarkerArgv('marker-target');

    const killer = spawnSync(command, args, { encoding: 'utf8' });
    const [, signal] = await once(target, 'exit');

    expect(killer.status).toBe(0);
    expect(signal).toBe('SIGKILL');
    expect(bystander.exitCode).toBeNull();
    expect(spawnSync('sh', ['-c', `grep -l "${EXEC_MARKER_ENV}=marker-target" /proc/[0-9]*/environ 2>/dev/null`]).stdout.toString()).toBe('');
  });
});
