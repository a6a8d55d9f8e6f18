import { Body, Controller, Get, HttpCode, HttpStatus, MessageEvent, Post, Res, Sse, UseGuards } from '@nestjs/common';
import { ApiAcceptedResponse, ApiBadRequestResponse, ApiConflictResponse, ApiNotFoundResponse, ApiOperation, ApiProduces, ApiQuery, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { interval, map, Observable } from 'rxjs';
import { AppConfig } from '../../config/app-config';
import { isClaudeMessageType } from '../../integrations/claude/claude.events';
import { ApiEnvelope } from '../../common/api-envelope.decorator';
import { RawResponse } from '../../common/response-envelope.interceptor';
import { Authenticated } from '../../common/auth-policy.decorator';
import { AuthenticatedUser, CurrentUser } from '../auth/authenticated-user';
import { CurrentSandbox } from '../sandboxes/sandbox-access.guard';
import { SandboxActivity } from '../sandboxes/sandbox-activity';
import type { Sandbox } from '../sandboxes/sandbox.entity';
import type { Run } from './run.entity';
import { CreateRunDto, RunCreatedResponse, RunResponse } from './run.dto';
import { RunEventLog, StoredEvent } from './run-event-log';
import { CurrentRun, ResumePosition, ResumePositionPipe, RunAccessGuard } from './run-access.guard';
import { RunsService } from './runs.service';


@ApiTags('runs')
@Controller('api/sandboxes/:id')
@Authenticated()
@UseGuards(RunAccessGuard)
@ApiNotFoundResponse({ description: 'No such sandbox or run in your account' })
export class RunsController {
  constructor(
    private readonly runs: RunsService,
    private readonly events: RunEventLog,
    private readonly config: AppConfig,
    private readonly activity: SandboxActivity,
  ) {}

  @Post('runs')
  @HttpCode(HttpStatus.ACCEPTED)
  @ApiOperation({ operationId: 'createRun', summary: 'Run Claude Code in the sandbox; follow it with the events stream' })
  @ApiEnvelope(RunCreatedResponse, { status: HttpStatus.ACCEPTED })
  @ApiConflictResponse({ description: 'A run is already active in this sandbox, or the sandbox is not running' })
  @ApiServiceUnavailableResponse({ description: 'No model credentials are configured' })
  async create(@CurrentUser() user: AuthenticatedUser, @CurrentSandbox() sandbox: Sandbox, @Body() dto: CreateRunDto): Promise<RunCreatedResponse> {
    const run = await this.runs.start(user.id, sandbox, dto);
    return { run_id: run.id, status: run.status };
  }

  @Get('runs')
  @ApiOperation({ operationId: 'listRuns', summary: 'Run history of the sandbox, newest first' })
  @ApiEnvelope(RunResponse, { isArray: true })
  async list(@CurrentSandbox() sandbox: Sandbox): Promise<RunResponse[]> {
    const runs = await this.runs.list(sandbox);
    const usage = await this.runs.modelUsageOf(runs.map((run) => run.id));
    return runs.map((run) => RunResponse.from(run, usage.get(run.id) ?? null));
  }

  @Get('runs/:run_id')
  @ApiOperation({ operationId: 'getRun', summary: 'One run with its outcome, cost and usage' })
  @ApiEnvelope(RunResponse)
  async get(@CurrentRun() run: Run): Promise<RunResponse> {
    return RunResponse.from(run, (await this.runs.modelUsageOf([run.id])).get(run.id) ?? null);
  }

  @Post('runs/:run_id/cancel')
  @HttpCode(HttpStatus.OK)
  @ApiOperation({ operationId: 'cancelRun', summary: 'Kill the Claude process of an active run (status cancelled)' })
  @ApiEnvelope(RunResponse)
  async cancel(@CurrentRun() run: Run): Promise<RunResponse> {
    return RunResponse.from(await this.runs.cancel(run.accountId, run.sandboxId, run.id));
  }

  @Sse('runs/:run_id/events')
  @RawResponse()
  @ApiOperation({ operationId: 'streamRunEvents', summary: 'Server-Sent Events of the run: replay after Last-Event-ID (or ?after=), then live, ending with done' })
  @ApiProduces('text/event-stream')
  @ApiQuery({ name: 'after', required: false, description: 'Replay events with a sequence number above this one', example: 12 })
  @ApiBadRequestResponse({ description: 'Last-Event-ID or after is not an event sequence number' })
  stream(@CurrentRun() run: Run, @ResumePosition(ResumePositionPipe) after: number | undefined): Observable<MessageEvent> {
    const events = this.eventsOf(run, after ?? 0).pipe(map(toMessageEvent));
    const heartbeat = interval(this.config.claude.sseHeartbeatSeconds * 1000).pipe(map((): MessageEvent => ({ comment: 'ping' }) as unknown as MessageEvent));
    return new Observable<MessageEvent>((subscriber) => {
      // Someone watching counts as activity: the sandbox is not idle-stopped under an open stream.
      const endActivity = this.activity.begin(run.sandboxId);
      const beats = heartbeat.subscribe(subscriber);
      const inner = events.subscribe({ next: (event) => subscriber.next(event), error: (error) => subscriber.error(error), complete: () => subscriber.complete() });
      return () => {
        beats.unsubscribe();
        inner.unsubscribe();
        void endActivity().catch(() => undefined);
      };
    });
  }

  @Post('claude')
  @RawResponse()
  @ApiOperation({ operationId: 'runClaudeStreaming', summary: 'Seed-compatible: run Claude and stream each stream-json line as `data:`, then `data: [DONE]`' })
  @ApiProduces('text/event-stream')
  @ApiAcceptedResponse({ description: 'text/event-stream of stream-json lines' })
  async claude(@CurrentUser() user: AuthenticatedUser, @CurrentSandbox() sandbox: Sandbox, @Body() dto: CreateRunDto, @Res() response: Response): Promise<void> {
    const run = await this.runs.start(user.id, sandbox, dto);
    response.status(HttpStatus.OK).set({ 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no', 'X-Run-Id': run.id });
    response.flushHeaders();
    const subscription = this.eventsOf(run, 0).subscribe({
      next: (event) => {
        const line = seedLineOf(event);
        if (line !== undefined) response.write(`data: ${line}\n\n`);
      },
      complete: () => response.end('data: [DONE]\n\n'),
      error: () => response.end('data: [DONE]\n\n'),
    });
    response.on('close', () => subscription.unsubscribe());
  }

  /** The one event source of both streams: the run's stored events after a position, then live ones. */
  private eventsOf(run: Run, after: number): Observable<StoredEvent> {
    return this.events.follow(run.id, after);
  }
}

function toMessageEvent(event: StoredEvent): MessageEvent {
  return { id: String(event.seq), type: event.type, data: event.data as object };
}

/** The stdout line of the Claude process behind an event, as the seed API streamed it. */
function seedLineOf(event: StoredEvent): string | undefined {
  if (isClaudeMessageType(event.type)) return JSON.stringify(event.data);
  if (event.type === 'output') return (event.data as { line: string }).line;
  return undefined;
}
