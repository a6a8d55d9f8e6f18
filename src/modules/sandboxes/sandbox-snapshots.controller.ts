import { Controller, Get, HttpStatus, Post, UseGuards } from '@nestjs/common';
import { ApiBadGatewayResponse, ApiNotFoundResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiEnvelope } from '../../common/api-envelope.decorator';
import { Authenticated } from '../../common/auth-policy.decorator';
import { SnapshotStatsResponse, SnapshotVersionResponse } from '../snapshots/snapshot.response';
import { SnapshotsService } from '../snapshots/snapshots.service';
import { CurrentSandbox, SandboxAccessGuard } from './sandbox-access.guard';
import type { Sandbox } from './sandbox.entity';
import { workspaceStorageOf } from './sandbox-storage';
import { SandboxesService } from './sandboxes.service';

@ApiTags('snapshots')
@Controller('api/sandboxes/:id/snapshots')
@Authenticated()
@UseGuards(SandboxAccessGuard)
@ApiNotFoundResponse({ description: 'No such sandbox in your account' })
export class SandboxSnapshotsController {
  constructor(
    private readonly sandboxes: SandboxesService,
    private readonly snapshots: SnapshotsService,
  ) {}

  @Post()
  @ApiOperation({ operationId: 'createSnapshot', summary: 'Snapshot the workspace volume as a new version (committed only if every file made it)' })
  @ApiEnvelope(SnapshotStatsResponse, { status: HttpStatus.CREATED })
  @ApiBadGatewayResponse({ description: 'Storage failed; the version was not committed and the previous latest stays latest' })
  async create(@CurrentSandbox() stored: Sandbox): Promise<SnapshotStatsResponse> {
    const sandbox = await this.sandboxes.refresh(stored);
    const stats = await this.sandboxes.snapshotWorkspace(sandbox);
    await this.sandboxes.touch(sandbox.id);
    return stats;
  }

  @Get()
  @ApiOperation({ operationId: 'listSnapshots', summary: "Committed versions of this sandbox's snapshot location (its volume's own, or the prefix it named), newest first" })
  @ApiEnvelope(SnapshotVersionResponse, { isArray: true })
  list(@CurrentSandbox() sandbox: Sandbox): Promise<SnapshotVersionResponse[]> {
    return this.snapshots.listVersions(workspaceStorageOf(sandbox));
  }
}
