import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { CREATE_PROGRESS_PHASES, type CreateProgressPhase, type SandboxNetworkMode } from '../../integrations/sandbox/sandbox-provider';
import { Sandbox } from './sandbox.entity';
import { SANDBOX_STATUSES, type SandboxStatus } from './sandbox.state-machine';
import { NETWORK_MODES, networkOfConfig } from './sandbox-network';

export class SandboxProgressResponse {
  @ApiProperty({ enum: CREATE_PROGRESS_PHASES, description: 'pulling_image and unpacking_image (a registry image not yet cached), building (Dockerfile steps the engine runs; cached steps are skipped), starting', example: 'building' })
  phase: CreateProgressPhase;
  @ApiProperty({ nullable: true, type: Number, description: 'Step being built, from 1 (building only)', example: 2 }) step: number | null;
  @ApiProperty({ nullable: true, type: Number, description: 'Steps to build (building only)', example: 3 }) steps: number | null;
  @ApiProperty({ nullable: true, type: String, description: 'The image reference or the instruction being built', example: 'RUN apk add --no-cache git' }) detail: string | null;
}

export class SandboxResponse {
  @ApiProperty({ format: 'uuid' }) sandbox_id: string;
  @ApiProperty({ enum: SANDBOX_STATUSES }) status: SandboxStatus;
  @ApiProperty({ enum: ['local', 'modal'] }) provider: string;
  @ApiProperty({ nullable: true, type: String }) image_base: string | null;
  @ApiProperty({ type: [String] }) dockerfile_commands: string[];
  @ApiProperty() volume_name: string;
  @ApiProperty() volume_mount_path: string;
  @ApiProperty() workdir: string;
  @ApiProperty({ type: 'object', additionalProperties: { type: 'string' } }) env: Record<string, string>;
  @ApiProperty({ type: [String], description: 'Secret names (values are never returned)' }) secrets: string[];
  @ApiProperty({ enum: NETWORK_MODES, description: 'The mode applied ("open" is answered as "internet")', example: 'allowlist' }) network: SandboxNetworkMode;
  @ApiProperty({ type: [String], description: 'CIDRs reachable directly (network "allowlist"), canonical form', example: ['203.0.113.0/24'] }) cidr_allowlist: string[];
  @ApiProperty({ type: [String], description: 'Host names reachable through the egress proxy (network "allowlist")', example: ['registry.npmjs.org', '*.github.com'] }) allowed_domains: string[];
  @ApiProperty() timeout_seconds: number;
  @ApiProperty({ nullable: true, type: Number }) idle_timeout_seconds: number | null;
  @ApiProperty({ nullable: true, type: String }) s3_bucket_name: string | null;
  @ApiProperty({ nullable: true, type: String, description: "null: the volume's own snapshot location", example: 'projects/demo/' }) s3_key_prefix: string | null;
  @ApiProperty() init_from_s3: boolean;
  @ApiPropertyOptional({
    description:
      'Limits the engine actually enforces (null = not enforced): lifetime_seconds, max_processes, memory_bytes, cpu_cores, disk_bytes (size of the writable layer and of each volume), exec_output_bytes',
    type: 'object',
    additionalProperties: true,
    nullable: true,
    example: { lifetime_seconds: 3600, max_processes: 512, memory_bytes: 4294967296, cpu_cores: 1, disk_bytes: 10737418240, exec_output_bytes: 1048576 },
  })
  limits: Record<string, number | null> | null;
  @ApiProperty() created_at: string;
  @ApiProperty({ nullable: true, type: String }) terminated_at: string | null;
  @ApiProperty() last_activity_at: string;
  @ApiProperty({ nullable: true, type: String, description: 'Why it ended: terminated_by_user, timeout (its lifetime, enforced even while the service is down), idle_timeout, exited (its init ended, with exit code), oom, killed, evicted (Modal moved it off a worker), start_failed, egress_filter_failed, creation_failed, creation_interrupted, engine_unreachable, service_restarted (the machine rebooted), …' }) exit_reason: string | null;
  @ApiProperty({ nullable: true, type: String }) error: string | null;
  @ApiProperty({
    type: SandboxProgressResponse,
    nullable: true,
    description: 'Where the create stands while status is creating (updated a few times a second at most); null otherwise',
    example: { phase: 'building', step: 2, steps: 3, detail: 'RUN apk add --no-cache git' },
  })
  progress: SandboxProgressResponse | null;

  static from(sandbox: Sandbox): SandboxResponse {
    const { config } = sandbox;
    const network = networkOfConfig(config);
    return {
      sandbox_id: sandbox.id,
      status: sandbox.status,
      provider: sandbox.provider,
      image_base: config.image_base,
      dockerfile_commands: config.dockerfile_commands,
      volume_name: config.volume_name,
      volume_mount_path: config.volume_mount_path,
      workdir: config.workdir,
      env: config.env,
      secrets: config.secrets,
      network: network.mode,
      cidr_allowlist: network.cidrAllowlist,
      allowed_domains: network.allowedDomains,
      timeout_seconds: config.timeout_seconds,
      idle_timeout_seconds: config.idle_timeout_seconds,
      s3_bucket_name: config.s3_bucket_name,
      s3_key_prefix: config.s3_key_prefix,
      init_from_s3: config.init_from_s3,
      limits: sandbox.limits as unknown as Record<string, number | null> | null,
      created_at: sandbox.createdAt.toISOString(),
      terminated_at: sandbox.terminatedAt?.toISOString() ?? null,
      last_activity_at: sandbox.lastActivityAt.toISOString(),
      exit_reason: sandbox.exitReason,
      error: sandbox.error,
      progress: sandbox.status === 'creating' ? (sandbox.progress ?? null) : null,
    };
  }
}
