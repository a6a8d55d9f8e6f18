import { ExecutionContext } from '@nestjs/common';
import { InvalidInputError } from '../../common/domain-error';
import { strictMock } from '../../testing/strict-mock';
import { SandboxAccessGuard } from '../sandboxes/sandbox-access.guard';
import type { Sandbox } from '../sandboxes/sandbox.entity';
import { SandboxNotFoundError } from '../sandboxes/sandboxes.errors';
import { SandboxesService } from '../sandboxes/sandboxes.service';
import { Run } from './run.entity';
import { ResumePositionPipe, RunAccessGuard } from './run-access.guard';
import { RunNotFoundError } from './runs.errors';
import { RunsService } from './runs.service';

const SANDBOX = '11111111-1111-4111-8111-111111111111';
const RUN = '22222222-2222-4222-8222-222222222222';

function contextFor(params: Record<string, string>): { context: ExecutionContext; request: Record<string, unknown> } {
  const request: Record<string, unknown> = { params, headers: {}, query: {}, user: { accountId: 'acc-1' } };
  return { request, context: { switchToHttp: () => ({ getRequest: () => request }) } as unknown as ExecutionContext };
}

describe('RunAccessGuard', () => {
  let sandboxes: jest.Mocked<SandboxesService>;
  let runs: jest.Mocked<RunsService>;
  let guard: RunAccessGuard;

  beforeEach(() => {
    sandboxes = strictMock<SandboxesService>('sandboxes', ['findOwned']);
    runs = strictMock<RunsService>('runs', ['get']);
    guard = new RunAccessGuard(new SandboxAccessGuard(sandboxes), runs);
  });

  it('loads the caller’s sandbox and run once and hands them to the handler', async () => {
    const sandbox = { id: SANDBOX } as Sandbox;
    const run = { id: RUN } as Run;
    sandboxes.findOwned.mockResolvedValue(sandbox);
    runs.get.mockResolvedValue(run);
    const { context, request } = contextFor({ id: SANDBOX, run_id: RUN });

    await expect(guard.canActivate(context)).resolves.toBe(true);

    expect(request).toMatchObject({ sandbox, run });
    expect(sandboxes.findOwned).toHaveBeenCalledTimes(1);
    expect(sandboxes.findOwned).toHaveBeenCalledWith('acc-1', SANDBOX);
    expect(runs.get).toHaveBeenCalledWith('acc-1', SANDBOX, RUN);
  });

  it('loads only the sandbox on routes without a run', async () => {
    sandboxes.findOwned.mockResolvedValue({ id: SANDBOX } as Sandbox);
    await expect(guard.canActivate(contextFor({ id: SANDBOX }).context)).resolves.toBe(true);
  });

  it('answers not found, before any stream starts, for another account’s sandbox or run', async () => {
    sandboxes.findOwned.mockRejectedValueOnce(new SandboxNotFoundError());
    await expect(guard.canActivate(contextFor({ id: SANDBOX, run_id: RUN }).context)).rejects.toBeInstanceOf(SandboxNotFoundError);

    sandboxes.findOwned.mockResolvedValue({ id: SANDBOX } as Sandbox);
    runs.get.mockRejectedValue(new RunNotFoundError());
    await expect(guard.canActivate(contextFor({ id: SANDBOX, run_id: RUN }).context)).rejects.toBeInstanceOf(RunNotFoundError);
  });

  it('answers not found for ids that cannot exist, without a database lookup', async () => {
    await expect(guard.canActivate(contextFor({ id: 'nope', run_id: RUN }).context)).rejects.toBeInstanceOf(SandboxNotFoundError);
    sandboxes.findOwned.mockResolvedValue({ id: SANDBOX } as Sandbox);
    await expect(guard.canActivate(contextFor({ id: SANDBOX, run_id: 'nope' }).context)).rejects.toBeInstanceOf(RunNotFoundError);
    expect(runs.get).not.toHaveBeenCalled();
  });
});

describe('ResumePositionPipe', () => {
  it('reads a sequence number, or nothing', () => {
    expect(new ResumePositionPipe().transform('12')).toBe(12);
    expect(new ResumePositionPipe().transform(undefined)).toBeUndefined();
  });

  it.each(['abc', '-1', ['1', '2']])('refuses a resume position that is not a sequence number: %j', (value) => {
    expect(() => new ResumePositionPipe().transform(value)).toThrow(InvalidInputError);
  });
});
