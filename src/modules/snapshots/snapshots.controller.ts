import { Controller, Get, HttpStatus, Param, ParseUUIDPipe, Post } from '@nestjs/common';
import { ApiBadGatewayResponse, ApiNotFoundResponse, ApiOperation, ApiProperty, ApiTags } from '@nestjs/swagger';
import { ApiEnvelope } from '../../common/api-envelope.decorator';
import { AppConfig } from '../../config/app-config';
import { Authenticated } from '../auth/auth-policy.decorator';
import { AuthenticatedUser, CurrentUser } from '../auth/authenticated-user';
import { snapshotLocationOf } from '../sandboxes/sandbox-storage';
import { SandboxesService } from '../sandboxes/sandboxes.service';
import { SnapshotEngine } from './snapshot-engine';

class SnapshotStatsResponse {
  @ApiProperty() version: number;
  @ApiProperty() files: number;
  @ApiProperty() bytes_total: number;
  @ApiProperty({ description: 'Content bytes uploaded; unchanged files are copied inside the store' }) bytes_uploaded: number;
  @ApiProperty() files_copied: number;
  @ApiProperty() duration_ms: number;
  @ApiProperty({ type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, error: { type: 'string' } } } }) errors: { path: string; error: string }[];
  @ApiProperty({ type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, reason: { type: 'string' } } } }) skipped: { path: string; reason: string }[];
}

class SnapshotVersionResponse {
  @ApiProperty() version: number;
  @ApiProperty() created_at: string;
  @ApiProperty() files: number;
  @ApiProperty() bytes: number;
}

@ApiTags('snapshots')
@Controller('api/sandboxes/:id/snapshots')
@Authenticated()
@ApiNotFoundResponse({ description: 'No such sandbox in your account' })
export class SnapshotsController {
  constructor(
    private readonly sandboxes: SandboxesService,
    private readonly engine: SnapshotEngine,
    private readonly config: AppConfig,
  ) {}

  @Post()
  @ApiOperation({ operationId: 'createSnapshot', summary: 'Snapshot the workspace volume as a new version (committed only if every file made it)' })
  @ApiEnvelope(SnapshotStatsResponse, { status: HttpStatus.CREATED })
  @ApiBadGatewayResponse({ description: 'Storage failed; the version was not committed and the previous latest stays latest' })
  async create(@CurrentUser() user: AuthenticatedUser, @Param('id', new ParseUUIDPipe()) id: string): Promise<SnapshotStatsResponse> {
    const sandbox = await this.sandboxes.get(user.accountId, id);
    const stats = await this.sandboxes.snapshotWorkspace(sandbox);
    await this.sandboxes.touch(sandbox.id);
    return stats;
  }

  @Get()
  @ApiOperation({ operationId: 'listSnapshots', summary: "Committed versions for this sandbox's bucket, prefix and account, newest first" })
  @ApiEnvelope(SnapshotVersionResponse, { isArray: true })
  async list(@CurrentUser() user: AuthenticatedUser, @Param('id', new ParseUUIDPipe()) id: string): Promise<SnapshotVersionResponse[]> {
    const sandbox = await this.sandboxes.findOwned(user.accountId, id);
    return this.engine.listVersions(snapshotLocationOf(sandbox, this.config.storage.defaultBucket));
  }
}
