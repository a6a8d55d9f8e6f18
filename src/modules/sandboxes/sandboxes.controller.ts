import { Body, Controller, Delete, Get, HttpCode, HttpStatus, Post, Query, UseGuards } from '@nestjs/common';
import { ApiBadGatewayResponse, ApiBadRequestResponse, ApiBody, ApiConflictResponse, ApiNotFoundResponse, ApiOperation, ApiTags, ApiUnprocessableEntityResponse } from '@nestjs/swagger';
import { ApiEnvelope } from '../../common/api-envelope.decorator';
import { Paginated } from '../../common/response-envelope.interceptor';
import { Authenticated } from '../../common/auth-policy.decorator';
import { AuthenticatedUser, CurrentUser } from '../auth/authenticated-user';
import { CurrentSandbox, SandboxAccessGuard } from './sandbox-access.guard';
import type { Sandbox } from './sandbox.entity';
import { CreateSandboxDto, ExecDto, ExecResponse, ListSandboxesQuery, TerminateSandboxQuery } from './sandbox.dto';
import { SandboxResponse } from './sandbox.response';
import { SandboxesService } from './sandboxes.service';

export const CREATE_EXAMPLES = {
  defaults: { summary: 'Defaults: network "internet", the host image, the default volume', value: {} },
  offline: { summary: 'No network (loopback and the model gateway only)', value: { network: 'none', env: { NODE_ENV: 'development' } } },
  cidr_allowlist: { summary: 'Only these CIDRs (every engine)', value: { network: 'allowlist', cidr_allowlist: ['203.0.113.0/24', '2001:db8::/32'] } },
  domain_allowlist: {
    summary: 'These host names through the egress proxy, plus a CIDR (local engine; Modal answers 422)',
    value: { network: 'allowlist', cidr_allowlist: ['203.0.113.7'], allowed_domains: ['registry.npmjs.org', '*.github.com'] },
  },
};

@ApiTags('sandboxes')
@Controller('api/sandboxes')
@Authenticated()
@ApiNotFoundResponse({ description: 'No such sandbox in your account' })
export class SandboxesController {
  constructor(private readonly sandboxes: SandboxesService) {}

  @Post()
  @ApiOperation({ operationId: 'createSandbox', summary: 'Create a sandbox; answers once it is running (image steps and restore done)' })
  @ApiEnvelope(SandboxResponse, { status: HttpStatus.CREATED })
  @ApiBody({ type: CreateSandboxDto, examples: CREATE_EXAMPLES })
  @ApiBadRequestResponse({ description: 'Invalid field (named in the message), unknown secret, unsupported Dockerfile instruction, cidr_allowlist/allowed_domains without network "allowlist"' })
  @ApiUnprocessableEntityResponse({ description: 'Image not usable by this engine, a Dockerfile step failed (named, with its output tail), or allowed_domains on an engine without a domain allowlist (Modal; details.field names it)' })
  async create(@CurrentUser() user: AuthenticatedUser, @Body() dto: CreateSandboxDto): Promise<SandboxResponse> {
    return SandboxResponse.from(await this.sandboxes.create(user.accountId, user.id, dto));
  }

  @Get()
  @ApiOperation({ operationId: 'listSandboxes', summary: "Your account's sandboxes, newest first, paginated with next_cursor" })
  @ApiEnvelope(SandboxResponse, { isArray: true })
  async list(@CurrentUser() user: AuthenticatedUser, @Query() query: ListSandboxesQuery): Promise<Paginated<SandboxResponse>> {
    const page = await this.sandboxes.list(user.accountId, query);
    return new Paginated(page.items.map(SandboxResponse.from), page.nextCursor);
  }

  @Get(':id')
  @UseGuards(SandboxAccessGuard)
  @ApiOperation({ operationId: 'getSandbox', summary: 'A sandbox with its current status (checked with the engine)' })
  @ApiEnvelope(SandboxResponse)
  async get(@CurrentSandbox() sandbox: Sandbox): Promise<SandboxResponse> {
    return SandboxResponse.from(await this.sandboxes.refresh(sandbox));
  }

  @Delete(':id')
  @UseGuards(SandboxAccessGuard)
  @ApiOperation({ operationId: 'terminateSandbox', summary: 'Terminate (idempotent); snapshots the workspace first (to its bucket or the default one), unless sync=false' })
  @ApiEnvelope(SandboxResponse)
  @ApiBadGatewayResponse({ description: 'The final snapshot failed; the sandbox is still running (retry, or force=true)' })
  async terminate(@CurrentSandbox() stored: Sandbox, @Query() query: TerminateSandboxQuery): Promise<SandboxResponse> {
    const { sandbox } = await this.sandboxes.terminate(stored, { sync: query.sync !== 'false', force: query.force === 'true' });
    return SandboxResponse.from(sandbox);
  }

  @Post(':id/exec')
  @UseGuards(SandboxAccessGuard)
  @HttpCode(HttpStatus.OK)
  @ApiOperation({ operationId: 'execInSandbox', summary: 'Run an argv in the sandbox and return its exit code and (capped) output' })
  @ApiEnvelope(ExecResponse)
  @ApiConflictResponse({ description: 'The sandbox is not running' })
  exec(@CurrentSandbox() sandbox: Sandbox, @Body() dto: ExecDto): Promise<ExecResponse> {
    return this.sandboxes.exec(sandbox, dto);
  }
}
