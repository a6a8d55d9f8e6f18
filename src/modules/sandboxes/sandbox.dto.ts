import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { ArrayMaxSize, ArrayMinSize, IsArray, IsBoolean, IsIn, IsInt, IsOptional, IsString, Matches, Max, MaxLength, Min, MinLength } from 'class-validator';
import { IsEnvMap, IsSafeAbsolutePath } from '../../common/validators';
import { SANDBOX_STATUSES, type SandboxStatus } from './sandbox.state-machine';
import { MAX_NETWORK_LIST_ENTRIES, NETWORK_INPUTS, type NetworkInput } from './sandbox-network';

export const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
export const S3_BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const ENV_LIMITS = { maxEntries: 128, maxBytes: 32 * 1024 };

export const NETWORK_DESCRIPTION = [
  'What the sandbox may reach besides its own loopback (on the local engine):',
  '"none": loopback only, plus the model gateway;',
  '"internet": the public internet through user-mode NAT; private, host, link-local and cloud metadata addresses are unreachable; DNS goes through the NAT;',
  '"allowlist": only the CIDRs in cidr_allowlist (directly) and the names in allowed_domains (through an HTTP/HTTPS proxy that processes are given as HTTP_PROXY/HTTPS_PROXY).',
  '"open" is a deprecated alias of "internet" and is answered as "internet".',
  'On Modal: "none" blocks the network, "allowlist" takes cidr_allowlist only.',
].join(' ');

export class CreateSandboxDto {
  @ApiPropertyOptional({ description: 'Image: omitted or "host" = the host system view (local) / the default image (Modal); a directory name under IMAGES_DIR (local); otherwise an OCI/Docker registry reference such as alpine:3.21 or registry.example.com/team/img@sha256:… (both engines)', example: 'host' })
  @IsOptional() @IsString() @MinLength(1) @MaxLength(255)
  image_base?: string;

  @ApiPropertyOptional({ type: [String], description: 'Dockerfile lines; ENV, WORKDIR and RUN are supported', example: ['RUN echo hello > /usr/local/hello'] })
  @IsOptional() @IsArray() @ArrayMaxSize(100) @IsString({ each: true }) @MaxLength(8192, { each: true })
  dockerfile_commands?: string[];

  @ApiPropertyOptional({ default: 'default', pattern: VOLUME_NAME.source, description: 'Named volume of your account, shared by every sandbox that names it' })
  @IsOptional() @IsString() @Matches(VOLUME_NAME, { message: 'volume_name must be 1-63 letters, digits, "-" or "_", starting with a letter or digit (no "/" or "..")' })
  volume_name?: string;

  @ApiPropertyOptional({ default: '/mnt/workspace' })
  @IsOptional() @IsSafeAbsolutePath()
  volume_mount_path?: string;

  @ApiPropertyOptional({ description: 'Working directory of commands; default the volume mount path' })
  @IsOptional() @IsSafeAbsolutePath({ allowRoot: true })
  workdir?: string;

  @ApiPropertyOptional({ type: 'object', additionalProperties: { type: 'string' }, example: { NODE_ENV: 'development' } })
  @IsOptional() @IsEnvMap(ENV_LIMITS)
  env?: Record<string, string>;

  @ApiPropertyOptional({ type: [String], description: 'Names of secrets; their values become environment variables. Local engine: defined in SECRETS_FILE. Modal: a Modal Secret of that name, else SECRETS_FILE. A name found nowhere answers 400 naming it' })
  @IsOptional() @IsArray() @ArrayMaxSize(32) @IsString({ each: true }) @Matches(/^[A-Za-z0-9_.-]{1,64}$/, { each: true, message: 'secrets must be secret names (letters, digits, ".", "-", "_")' })
  secrets?: string[];

  @ApiPropertyOptional({
    enum: NETWORK_INPUTS,
    default: 'internet',
    description: NETWORK_DESCRIPTION,
    example: 'allowlist',
  })
  @IsOptional() @IsIn(NETWORK_INPUTS)
  network?: NetworkInput;

  @ApiPropertyOptional({
    type: [String],
    maxItems: MAX_NETWORK_LIST_ENTRIES,
    default: [],
    description:
      'Only with network "allowlist": IPv4/IPv6 CIDRs the sandbox may connect to directly. A bare address means /32 or /128; host bits below the prefix are refused (write 10.1.0.0/16, not 10.1.2.3/16); answered in canonical form. Private, loopback, link-local, multicast and reserved ranges stay unreachable, and a CIDR wholly inside one is refused.',
    example: ['203.0.113.0/24', '2001:db8::/32'],
  })
  @IsOptional() @IsArray() @ArrayMaxSize(MAX_NETWORK_LIST_ENTRIES) @IsString({ each: true }) @MaxLength(64, { each: true })
  cidr_allowlist?: string[];

  @ApiPropertyOptional({
    type: [String],
    maxItems: MAX_NETWORK_LIST_ENTRIES,
    default: [],
    description:
      'Only with network "allowlist": host names reachable through the egress HTTP/HTTPS proxy, or "*.example.com" (any subdomain, not example.com itself). Lowercased; no ports, schemes or IP addresses; at most 253 characters. Local engine only: Modal refuses a non-empty list with 422.',
    example: ['registry.npmjs.org', '*.github.com'],
  })
  @IsOptional() @IsArray() @ArrayMaxSize(MAX_NETWORK_LIST_ENTRIES) @IsString({ each: true }) @MaxLength(256, { each: true })
  allowed_domains?: string[];

  @ApiPropertyOptional({ description: 'Maximum lifetime in seconds; default and cap are configured by the operator' })
  @IsOptional() @IsInt() @Min(10)
  timeout_seconds?: number;

  @ApiPropertyOptional({ description: 'Terminate after this many seconds without activity' })
  @IsOptional() @IsInt() @Min(10)
  idle_timeout_seconds?: number;

  @ApiPropertyOptional({ description: 'Bucket for workspace snapshots; must be allowed by STORAGE_ALLOWED_BUCKETS' })
  @IsOptional() @IsString() @Matches(S3_BUCKET_NAME, { message: 's3_bucket_name must be a valid bucket name' })
  s3_bucket_name?: string;

  @ApiPropertyOptional({ description: 'Key prefix inside the bucket, shared by every volume that names it; the account id is appended by the service. Without it the volume has its own location.', example: 'projects/demo/' })
  @IsOptional() @IsString() @MaxLength(512)
  s3_key_prefix?: string;

  @ApiPropertyOptional({ description: 'Restore the latest (or snapshot_version) workspace snapshot into the volume before start' })
  @IsOptional() @IsBoolean()
  init_from_s3?: boolean;

  @ApiPropertyOptional({ description: 'With init_from_s3: the version to restore instead of the latest' })
  @IsOptional() @IsInt() @Min(1)
  snapshot_version?: number;
}

export class ListSandboxesQuery {
  @ApiPropertyOptional({ enum: SANDBOX_STATUSES })
  @IsOptional() @IsIn(SANDBOX_STATUSES)
  status?: SandboxStatus;

  @ApiPropertyOptional({ minimum: 1, maximum: 100, default: 20 })
  @IsOptional() @Type(() => Number) @IsInt() @Min(1) @Max(100)
  limit?: number;

  @ApiPropertyOptional({ description: 'next_cursor from the previous page' })
  @IsOptional() @IsString() @MaxLength(200)
  cursor?: string;
}

export class TerminateSandboxQuery {
  @ApiPropertyOptional({ description: 'Snapshot the workspace first when storage is configured (default true)', default: true })
  @IsOptional() @IsIn(['true', 'false'])
  sync?: 'true' | 'false';

  @ApiPropertyOptional({ description: 'Terminate even if the final snapshot fails', default: false })
  @IsOptional() @IsIn(['true', 'false'])
  force?: 'true' | 'false';
}

export class ExecDto {
  @ApiProperty({ type: [String], example: ['ls', '-la'], description: 'argv; never interpreted by a shell unless you run one' })
  @IsArray() @ArrayMinSize(1) @ArrayMaxSize(1024) @IsString({ each: true })
  command: string[];

  @ApiPropertyOptional()
  @IsOptional() @IsSafeAbsolutePath({ allowRoot: true })
  workdir?: string;

  @ApiPropertyOptional({ type: 'object', additionalProperties: { type: 'string' } })
  @IsOptional() @IsEnvMap(ENV_LIMITS)
  env?: Record<string, string>;

  @ApiPropertyOptional({ minimum: 1, maximum: 3600 })
  @IsOptional() @IsInt() @Min(1) @Max(3600)
  timeout_seconds?: number;
}

export class ExecResponse {
  @ApiProperty() exit_code: number;
  @ApiProperty() stdout: string;
  @ApiProperty() stderr: string;
  @ApiProperty() duration_ms: number;
  @ApiProperty({ description: 'Output beyond the per-exec cap was dropped' }) truncated: boolean;
  @ApiProperty() timed_out: boolean;
}
