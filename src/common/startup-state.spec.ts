import { Logger } from '@nestjs/common';
import { StartupState } from './startup-state';

describe('StartupState', () => {
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  let logs: jest.SpyInstance;
  let errors: jest.SpyInstance;

  beforeEach(() => {
    logs = jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
  });
  afterEach(() => jest.restoreAllMocks());

  it('is not ready until the bootstrap hooks have run, then ready', () => {
    const state = new StartupState();
    expect(state.status()).toEqual({ ready: false, pending: [], failed: [] });

    state.markReady();

    expect(state.isReady()).toBe(true);
    expect(logs).toHaveBeenCalledTimes(1);
    expect(logs).toHaveBeenCalledWith({ startup_ms: expect.any(Number) }, 'start-up work finished: this instance is ready');
  });

  it('waits for every registered task, naming those still running', async () => {
    const state = new StartupState();
    let finishRuns!: () => void;
    const runs = state.register('runs', new Promise<void>((resolve) => (finishRuns = resolve)));
    const sandboxes = state.register('sandboxes', Promise.resolve(3));

    state.markReady();
    expect(await sandboxes).toBe(3);
    await settle();
    expect(state.status()).toEqual({ ready: false, pending: ['runs'], failed: [] });

    finishRuns();
    await runs;
    await settle();
    expect(state.status()).toEqual({ ready: true, pending: [], failed: [] });
  });

  it('stays not ready when a task fails, saying which and why, and lets its caller see the failure', async () => {
    const state = new StartupState();
    const work = state.register('runs', Promise.reject(new Error('database gone')));
    state.markReady();

    await expect(work).rejects.toThrow('database gone');
    await settle();
    expect(state.status()).toEqual({ ready: false, pending: [], failed: [{ task: 'runs', error: 'database gone' }] });
    expect(errors).toHaveBeenCalledWith({ task: 'runs', error: 'database gone' }, expect.stringContaining('stays not ready'));
    expect(logs).not.toHaveBeenCalled();
  });

  it('is not ready while work registered after start-up runs (background work)', async () => {
    const state = new StartupState();
    state.markReady();
    let finish!: () => void;
    state.register('late', new Promise<void>((resolve) => (finish = resolve)));
    expect(state.isReady()).toBe(false);

    finish();
    await settle();
    expect(state.isReady()).toBe(true);
  });
});
