import { ExecutionContext } from '@nestjs/common';
import { InvalidInputError } from '../../common/domain-error';
import { strictMock } from '../../testing/strict-mock';
import { Run } from './run.entity';
import { RunStreamGuard } from './run-stream.guard';
import { RunNotFoundError } from './runs.errors';
import { RunsService } from './runs.service';

const SANDBOX = '11111111-1111-4111-8111-111111111111';
const RUN = '22222222-2222-4222-8222-222222222222';

function contextFor(request: { params: Record<string, string>; headers?: Record<string, string>; query?: Record<string, unknown> }): ExecutionContext {
  const full = { headers: {}, query: {}, user: { accountId: 'acc-1' }, ...request };
  return { switchToHttp: () => ({ getRequest: () => full }) } as unknown as ExecutionContext;
}

describe('RunStreamGuard', () => {
  let runs: jest.Mocked<RunsService>;
  let guard: RunStreamGuard;

  beforeEach(() => {
    runs = strictMock<RunsService>('runs', ['get']);
    guard = new RunStreamGuard(runs);
  });

  it('lets the stream start for the caller’s own run', async () => {
    runs.get.mockResolvedValue({ id: RUN } as Run);
    await expect(guard.canActivate(contextFor({ params: { id: SANDBOX, run_id: RUN }, headers: { 'last-event-id': '12' } }))).resolves.toBe(true);
    expect(runs.get).toHaveBeenCalledWith('acc-1', SANDBOX, RUN);
  });

  it('answers not found, before any stream starts, for another account’s run', async () => {
    runs.get.mockRejectedValue(new RunNotFoundError());
    await expect(guard.canActivate(contextFor({ params: { id: SANDBOX, run_id: RUN } }))).rejects.toBeInstanceOf(RunNotFoundError);
  });

  it('answers not found for ids that cannot exist, without a database lookup', async () => {
    await expect(guard.canActivate(contextFor({ params: { id: SANDBOX, run_id: 'nope' } }))).rejects.toBeInstanceOf(RunNotFoundError);
  });

  it.each([{ headers: { 'last-event-id': 'abc' } }, { query: { after: '-1' } }, { query: { after: ['1', '2'] } }])('refuses a resume position that is not a sequence number: %j', async (extra) => {
    await expect(guard.canActivate(contextFor({ params: { id: SANDBOX, run_id: RUN }, ...extra }))).rejects.toBeInstanceOf(InvalidInputError);
  });
});
