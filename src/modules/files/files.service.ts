import { Injectable, StreamableFile } from '@nestjs/common';
import { ApiProperty } from '@nestjs/swagger';
import { extname, posix } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { AppConfig } from '../../config/app-config';
import { PayloadTooLargeError } from '../../common/domain-error';
import { VolumeEntry } from '../../integrations/sandbox/sandbox-provider';
import { VolumePathNotFoundError } from '../../integrations/sandbox/sandbox-provider.errors';
import type { Sandbox } from '../sandboxes/sandbox.entity';
import { SandboxActivity } from '../sandboxes/sandbox-activity';
import { SandboxesService } from '../sandboxes/sandboxes.service';

const CONTENT_TYPES: Record<string, string> = {
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.json': 'application/json',
  '.js': 'text/javascript; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8',
  '.html': 'text/plain; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.csv': 'text/csv; charset=utf-8',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.gif': 'image/gif',
  '.pdf': 'application/pdf',
  '.zip': 'application/zip',
};

export class FileEntryResponse {
  @ApiProperty() name: string;
  @ApiProperty() path: string;
  @ApiProperty({ enum: ['file', 'directory', 'symlink', 'other'] }) type: string;
  @ApiProperty() size: number;
  @ApiProperty({ description: 'Permission bits, e.g. 420 = 0644' }) mode: number;
  @ApiProperty() modified_at: string;

  static from(entry: VolumeEntry): FileEntryResponse {
    return { name: entry.name, path: entry.path, type: entry.type, size: entry.size, mode: entry.mode & 0o7777, modified_at: entry.modifiedAt.toISOString() };
  }
}

export class UploadTooLargeError extends PayloadTooLargeError {
  constructor(limit: number) {
    super(`The file is larger than the upload limit of ${limit} bytes (FILE_UPLOAD_LIMIT_BYTES)`);
  }
}

/** The workspace files API, confined to the sandbox's volume by the provider's VolumeAccess. */
@Injectable()
export class FilesService {
  constructor(
    private readonly sandboxes: SandboxesService,
    private readonly config: AppConfig,
    private readonly activity: SandboxActivity,
  ) {}

  async list(sandbox: Sandbox, path: string): Promise<FileEntryResponse[]> {
    const volume = this.sandboxes.volumeOf(sandbox);
    return (await volume.list(path)).map(FileEntryResponse.from);
  }

  async download(sandbox: Sandbox, path: string): Promise<StreamableFile> {
    const volume = this.sandboxes.volumeOf(sandbox);
    const entry = await volume.stat(path);
    if (!entry || entry.type !== 'file') throw new VolumePathNotFoundError(path);
    const name = posix.basename(entry.path);
    // A transfer in progress is work: the sandbox is not idle until the last byte is sent.
    const endActivity = this.activity.begin(sandbox.id);
    const content = await volume.openRead(path).catch(async (error: unknown) => {
      await endActivity();
      throw error;
    });
    content.once('close', () => void endActivity());
    return new StreamableFile(content, {
      type: CONTENT_TYPES[extname(name).toLowerCase()] ?? 'application/octet-stream',
      length: entry.size,
      disposition: `attachment; filename="${name.replace(/[^\x20-\x7e]|["\\]/g, '_')}"; filename*=UTF-8''${encodeURIComponent(name)}`,
    });
  }

  async upload(sandbox: Sandbox, path: string, body: Readable, declaredLength: number): Promise<FileEntryResponse> {
    const limit = this.config.storage.fileUploadLimitBytes;
    if (declaredLength > limit) throw new UploadTooLargeError(limit);
    const volume = this.sandboxes.volumeOf(sandbox);
    await this.activity.during(sandbox.id, () => volume.write(path, body.pipe(limitBytes(limit))));
    await this.sandboxes.touch(sandbox.id);
    const entry = await volume.stat(path);
    if (!entry) throw new VolumePathNotFoundError(path);
    return FileEntryResponse.from(entry);
  }
}

function limitBytes(limit: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      callback(seen > limit ? new UploadTooLargeError(limit) : null, chunk);
    },
  });
}
