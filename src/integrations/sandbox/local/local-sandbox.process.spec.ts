import { PassThrough } from 'node:stream';
import type { SandboxProcess } from '../sandbox-provider';
import { exitCodeOf, runCapturingTail } from './local-sandbox.process';

describe('exitCodeOf', () => {
  it.each([
    [0, null, 0],
    [3, null, 3],
    [null, 'SIGKILL', 137],
    [null, 'SIGTERM', 143],
  ] as const)('maps code %p / signal %p to %p', (code, signal, expected) => {
    expect(exitCodeOf(code, signal)).toBe(expected);
  });
});

describe('runCapturingTail', () => {
  it('returns the exit code and the last bytes of stdout and stderr together', async () => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const process: SandboxProcess = {
      stdout,
      stderr,
      wait: () => new Promise((resolve) => setImmediate(() => resolve({ exitCode: 2, timedOut: false }))),
      kill: () => Promise.reject(new Error('not expected')),
    };

    const result = runCapturingTail(process, 8);
    stdout.write('0123456789');
    stderr.write('abc');

    expect(await result).toEqual({ exitCode: 2, outputTail: '56789abc' });
  });
});
