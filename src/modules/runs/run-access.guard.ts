import { CanActivate, createParamDecorator, ExecutionContext, Injectable, PipeTransform } from '@nestjs/common';
import { InvalidInputError } from '../../common/domain-error';
import { isUuid, SandboxAccessGuard, type SandboxRequest } from '../sandboxes/sandbox-access.guard';
import type { Run } from './run.entity';
import { RunNotFoundError } from './runs.errors';
import { RunsService } from './runs.service';

const SEQ = /^\d{1,9}$/;

type RunRequest = SandboxRequest & { run?: Run };

/**
 * SandboxAccessGuard for run routes: also loads `:run_id`, which must be a run of that sandbox. Guards
 * run before the handler, and Nest sends an event stream's headers (200) as soon as the handler is
 * called, so a 404 decided any later could never reach the client.
 */
@Injectable()
export class RunAccessGuard implements CanActivate {
  constructor(
    private readonly sandboxAccess: SandboxAccessGuard,
    private readonly runs: RunsService,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    await this.sandboxAccess.canActivate(context);
    const request = context.switchToHttp().getRequest<RunRequest>();
    const { run_id: runId } = request.params as Record<string, string | undefined>;
    if (runId === undefined) return true;
    if (!isUuid(runId)) throw new RunNotFoundError();
    request.run = await this.runs.get(request.user.accountId, request.sandbox!.id, runId);
    return true;
  }
}

/** The run RunAccessGuard loaded for this request. */
export const CurrentRun = createParamDecorator((_data: unknown, context: ExecutionContext): Run => {
  const { run } = context.switchToHttp().getRequest<RunRequest>();
  if (!run) throw new Error('CurrentRun used on a route without RunAccessGuard and :run_id');
  return run;
});

/** Where an event stream resumes: the Last-Event-ID header, else ?after=. Validate it with ResumePositionPipe. */
export const ResumePosition = createParamDecorator((_data: unknown, context: ExecutionContext): unknown => {
  const request = context.switchToHttp().getRequest<RunRequest>();
  return request.headers['last-event-id'] ?? request.query.after;
});

/** Pipes, like guards, run before an event stream starts, so this 400 still reaches the client. */
export class ResumePositionPipe implements PipeTransform<unknown, number | undefined> {
  transform(value: unknown): number | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || !SEQ.test(value)) throw new InvalidInputError('Last-Event-ID / after must be an event sequence number');
    return Number(value);
  }
}
