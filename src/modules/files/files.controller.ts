import { Controller, Get, HttpStatus, Put, Query, Req, StreamableFile, UseGuards } from '@nestjs/common';
import { ApiConsumes, ApiNotFoundResponse, ApiOperation, ApiPayloadTooLargeResponse, ApiProduces, ApiProperty, ApiPropertyOptional, ApiTags } from '@nestjs/swagger';
import { IsOptional, IsString, MaxLength } from 'class-validator';
import type { Request } from 'express';
import { ApiEnvelope } from '../../common/api-envelope.decorator';
import { Authenticated } from '../../common/auth-policy.decorator';
import { CurrentSandbox, SandboxAccessGuard } from '../sandboxes/sandbox-access.guard';
import type { Sandbox } from '../sandboxes/sandbox.entity';
import { FileEntryResponse, FilesService } from './files.service';

class DirectoryQuery {
  @ApiPropertyOptional({ description: 'Directory inside the volume ("" = its root)', default: '' })
  @IsOptional() @IsString() @MaxLength(4096)
  path?: string;
}

class FileQuery {
  @ApiProperty({ description: 'File path inside the volume', example: 'src/index.ts' })
  @IsString() @MaxLength(4096)
  path: string;
}

@ApiTags('files')
@Controller('api/sandboxes/:id/files')
@Authenticated()
@UseGuards(SandboxAccessGuard)
@ApiNotFoundResponse({ description: 'No such sandbox, file or directory' })
export class FilesController {
  constructor(private readonly files: FilesService) {}

  @Get()
  @ApiOperation({ operationId: 'listFiles', summary: "Entries of a directory in the sandbox's volume" })
  @ApiEnvelope(FileEntryResponse, { isArray: true })
  list(@CurrentSandbox() sandbox: Sandbox, @Query() query: DirectoryQuery): Promise<FileEntryResponse[]> {
    return this.files.list(sandbox, query.path ?? '');
  }

  @Get('content')
  @ApiOperation({ operationId: 'downloadFile', summary: 'The file, streamed' })
  @ApiProduces('application/octet-stream')
  download(@CurrentSandbox() sandbox: Sandbox, @Query() query: FileQuery): Promise<StreamableFile> {
    return this.files.download(sandbox, query.path);
  }

  @Put('content')
  @ApiOperation({ operationId: 'uploadFile', summary: 'Write the raw request body to the file (parents created); limit FILE_UPLOAD_LIMIT_BYTES' })
  @ApiConsumes('application/octet-stream')
  @ApiEnvelope(FileEntryResponse, { status: HttpStatus.OK })
  @ApiPayloadTooLargeResponse({ description: 'Larger than FILE_UPLOAD_LIMIT_BYTES' })
  upload(@CurrentSandbox() sandbox: Sandbox, @Query() query: FileQuery, @Req() request: Request): Promise<FileEntryResponse> {
    return this.files.upload(sandbox, query.path, request, Number(request.headers['content-length'] ?? NaN));
  }
}
