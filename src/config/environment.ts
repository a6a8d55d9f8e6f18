import { plainToInstance, Transform } from 'class-transformer';
import {
  IsEmail,
  IsIn,
  IsInt,
  IsNumber,
  IsOptional,
  IsString,
  Matches,
  Max,
  Min,
  MinLength,
  validateSync,
} from 'class-validator';

const toInt = ({ value }: { value: unknown }) =>
  value === undefined || value === '' ? undefined : Number(value);
const toNumber = ({ value }: { value: unknown }) =>
  value === undefined || value === '' ? undefined : Number(value);
const emptyToUndefined = ({ value }: { value: unknown }) => (value === '' ? undefined : value);

/** What an instance id may look like: safe in logs, file names, metric labels and host names. */
export const INSTANCE_ID_FORMAT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Every environment variable the service reads, validated once at boot. */
export class EnvironmentVariables {
  @IsOptional() @Transform(toInt) @IsInt() @Min(0) @Max(65535)
  PORT: number = 3000;

  @IsOptional() @IsString()
  HOST: string = '127.0.0.1';

  @IsOptional() @IsString()
  DATA_DIR: string = './data';

  /** This instance's name in every log line and in /api/health; unset = hostname + a random suffix chosen at start. */
  @IsOptional() @Transform(emptyToUndefined) @Matches(INSTANCE_ID_FORMAT, { message: 'INSTANCE_ID must be 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit' })
  INSTANCE_ID?: string;

  @IsOptional() @Transform(emptyToUndefined) @Matches(/^postgres(ql)?:\/\//, { message: 'DATABASE_URL must start with postgres:// or postgresql://' })
  DATABASE_URL?: string;

  @IsOptional() @Transform(emptyToUndefined) @IsString() @MinLength(32, { message: 'JWT_SECRET must be at least 32 characters' })
  JWT_SECRET?: string;

  @IsOptional() @Transform(toInt) @IsInt() @Min(60) @Max(30 * 24 * 3600)
  JWT_EXPIRES_IN_SECONDS: number = 3600;

  @IsOptional() @Transform(emptyToUndefined) @IsEmail({}, { message: 'ADMIN_EMAIL must be an email address' })
  ADMIN_EMAIL?: string;

  @IsOptional() @Transform(emptyToUndefined) @IsString() @MinLength(8, { message: 'ADMIN_PASSWORD must be at least 8 characters' })
  ADMIN_PASSWORD?: string;

  @IsOptional() @Transform(toInt) @IsInt() @Min(1)
  LOGIN_RATE_LIMIT: number = 10;

  @IsOptional() @Transform(toInt) @IsInt() @Min(1)
  LOGIN_RATE_WINDOW_SECONDS: number = 60;

  @IsOptional() @Matches(/^\d+(b|kb|mb)$/i, { message: 'BODY_LIMIT must look like 100kb or 1mb' })
  BODY_LIMIT: string = '1mb';

  /** Proxies whose X-Forwarded-For is believed (client address for the login limit); unset = none. */
  @IsOptional() @Transform(emptyToUndefined) @Matches(/^[\w.:/, -]+$/, { message: 'TRUST_PROXY must be a hop count, true, or addresses/subnets separated by commas' })
  TRUST_PROXY?: string;

  @IsOptional() @IsIn(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
  LOG_LEVEL: string = 'info';

  /** Log bytes kept while stdout cannot be written (full disk, stalled reader); lines beyond are dropped and counted. */
  @IsOptional() @Transform(toInt) @IsInt() @Min(65_536)
  LOG_BUFFER_LIMIT_BYTES: number = 4 * 1024 * 1024;

  /** /api/health reports the data directory's disk as down with less free space than this. */
  @IsOptional() @Transform(toInt) @IsInt() @Min(0)
  DATA_DIR_MIN_FREE_MB: number = 64;

  // --- sandboxes ---
  @IsOptional() @IsIn(['local', 'modal'])
  SANDBOX_PROVIDER: 'local' | 'modal' = 'local';

  @IsOptional() @Transform(emptyToUndefined) @IsString()
  IMAGES_DIR?: string;

  @IsOptional() @Transform(emptyToUndefined) @IsString()
  SECRETS_FILE?: string;

  @IsOptional() @Transform(toInt) @IsInt() @Min(10)
  SANDBOX_DEFAULT_TIMEOUT_SECONDS: number = 3600;

  @IsOptional() @Transform(toInt) @IsInt() @Min(10)
  SANDBOX_MAX_TIMEOUT_SECONDS: number = 86400;

  @IsOptional() @Transform(toInt) @IsInt() @Min(16)
  SANDBOX_MAX_PROCESSES: number = 512;

  @IsOptional() @Transform(toInt) @IsInt() @Min(64)
  SANDBOX_MEMORY_LIMIT_MB: number = 4096;

  /** Cores per sandbox; fractions allowed (0.5). */
  @IsOptional() @Transform(toNumber) @IsNumber({}, { message: 'SANDBOX_CPU_LIMIT must be a number of cores' }) @Min(0.01)
  SANDBOX_CPU_LIMIT: number = 1;

  /** Per sandbox: its writable layer, and each volume, are filesystems of this size. */
  @IsOptional() @Transform(toInt) @IsInt() @Min(64)
  SANDBOX_DISK_LIMIT_MB: number = 10240;

  /** First host uid/gid of the range sandbox uids 0… map to (an /etc/subuid-style range no real user may use). */
  @IsOptional() @Transform(toInt) @IsInt() @Min(1000) @Max(4_294_000_000)
  SANDBOX_UID_BASE: number = 100_000;

  @IsOptional() @Transform(toInt) @IsInt() @Min(65536) @Max(1_000_000)
  SANDBOX_UID_COUNT: number = 65_536;

  @IsOptional() @Transform(toInt) @IsInt() @Min(1024)
  EXEC_OUTPUT_LIMIT_BYTES: number = 1024 * 1024;

  @IsOptional() @Transform(toInt) @IsInt() @Min(1)
  EXEC_DEFAULT_TIMEOUT_SECONDS: number = 120;

  /** How often the idle/lifetime sweep runs (once per period across instances sharing a database); below the lifetime lead of 30 s. */
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) @Max(20)
  SANDBOX_SWEEP_INTERVAL_SECONDS: number = 10;

  @IsOptional() @IsString()
  BWRAP_BIN: string = 'bwrap';

  @IsOptional() @Transform(emptyToUndefined) @IsString()
  CLAUDE_BIN?: string;

  /** The CLI's musl build, for local sandboxes on musl images (alpine); `npm run build` fetches it to the default. */
  @IsOptional() @Transform(emptyToUndefined) @IsString()
  CLAUDE_BIN_MUSL?: string;

  // --- registry images (local engine) ---
  /** Credentials of private registries, containers-auth.json / Docker config.json format; unset = anonymous pulls. */
  @IsOptional() @Transform(emptyToUndefined) @IsString()
  REGISTRY_AUTH_FILE?: string;

  /** if-not-present: a cached tag is used as is; always: tags are resolved again on every create; never: only cached images. */
  @IsOptional() @IsIn(['if-not-present', 'always', 'never'])
  IMAGE_PULL_POLICY: 'if-not-present' | 'always' | 'never' = 'if-not-present';

  /** Registries (host:port, comma-separated) spoken to over plain HTTP or unverified TLS; loopback registries need no listing. */
  @IsOptional() @Transform(emptyToUndefined) @Matches(/^\s*[A-Za-z0-9.-]+(:\d{1,5})?(\s*,\s*[A-Za-z0-9.-]+(:\d{1,5})?)*\s*$/, { message: 'REGISTRY_INSECURE must be host:port entries separated by commas' })
  REGISTRY_INSECURE?: string;

  /** Size cap of the registry image cache (GiB, fractions allowed); after each pull least-recently-used images no sandbox runs on are removed. Unset = no cap. */
  @IsOptional() @Transform(toNumber) @IsNumber({ allowNaN: false, allowInfinity: false }, { message: 'IMAGE_CACHE_MAX_GB must be a number of GiB' }) @Min(0)
  IMAGE_CACHE_MAX_GB?: number;

  // --- Claude runs (model credentials are passed only to the Claude process) ---
  @IsOptional() @Transform(emptyToUndefined) @IsString() ANTHROPIC_API_KEY?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsString() ANTHROPIC_AUTH_TOKEN?: string;
  @IsOptional() @Transform(emptyToUndefined) @Matches(/^https?:\/\//, { message: 'ANTHROPIC_BASE_URL must be an http(s) URL' }) ANTHROPIC_BASE_URL?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsString() ANTHROPIC_MODEL?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsIn(['0', '1', 'true', 'false']) CLAUDE_CODE_USE_BEDROCK?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsString() AWS_REGION?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsString() AWS_BEARER_TOKEN_BEDROCK?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsString() AWS_ACCESS_KEY_ID?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsString() AWS_SECRET_ACCESS_KEY?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsString() AWS_SESSION_TOKEN?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsIn(['0', '1', 'true', 'false']) CLAUDE_CODE_USE_VERTEX?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsString() CLOUD_ML_REGION?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsString() ANTHROPIC_VERTEX_PROJECT_ID?: string;

  // --- model gateway (the sandbox's Claude process talks to it with a per-run token) ---
  /** Host loopback port of the gateway for local sandboxes; 0 = any free port. */
  @IsOptional() @Transform(toInt) @IsInt() @Min(0) @Max(65535)
  MODEL_GATEWAY_PORT: number = 0;

  /** The gateway's URL as Modal sandboxes reach it (this service's public URL + /model-gateway). */
  @IsOptional() @Transform(emptyToUndefined) @Matches(/^https?:\/\/[^\s]+$/, { message: 'MODEL_GATEWAY_PUBLIC_URL must be an http(s) URL' })
  MODEL_GATEWAY_PUBLIC_URL?: string;

  @IsOptional() @Transform(toInt) @IsInt() @Min(5)
  RUN_IDLE_TIMEOUT_SECONDS: number = 600;

  /** How long an instance owns its active runs without renewing; another instance takes over a run whose lease ran out. */
  @IsOptional() @Transform(toInt) @IsInt() @Min(3) @Max(600)
  RUN_LEASE_SECONDS: number = 15;

  @IsOptional() @Transform(toInt) @IsInt() @Min(5)
  RUN_DEFAULT_TIMEOUT_SECONDS: number = 3600;

  @IsOptional() @Transform(toInt) @IsInt() @Min(1)
  RUN_MAX_PROMPT_CHARS: number = 100_000;

  @IsOptional() @Transform(toInt) @IsInt() @Min(1)
  SSE_HEARTBEAT_SECONDS: number = 15;

  // --- workspace storage ---
  @IsOptional() @IsIn(['local', 's3'])
  STORAGE_PROVIDER: 'local' | 's3' = 'local';

  @IsOptional() @Transform(emptyToUndefined) @Matches(/^https?:\/\//, { message: 'S3_ENDPOINT must be an http(s) URL' }) S3_ENDPOINT?: string;
  @IsOptional() @IsString() S3_REGION: string = 'us-east-1';
  @IsOptional() @Transform(emptyToUndefined) @IsString() S3_ACCESS_KEY_ID?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsString() S3_SECRET_ACCESS_KEY?: string;
  @IsOptional() @IsIn(['0', '1', 'true', 'false']) S3_FORCE_PATH_STYLE: string = 'false';
  @IsOptional() @Matches(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { message: 'S3_DEFAULT_BUCKET must be a valid bucket name' }) S3_DEFAULT_BUCKET: string = 'workspaces';
  @IsOptional() @Transform(emptyToUndefined) @IsString() STORAGE_ALLOWED_BUCKETS?: string;

  @IsOptional() @Transform(toInt) @IsInt() @Min(1)
  FILE_UPLOAD_LIMIT_BYTES: number = 100 * 1024 * 1024;

  // --- Modal ---
  @IsOptional() @Transform(emptyToUndefined) @IsString() MODAL_TOKEN_ID?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsString() MODAL_TOKEN_SECRET?: string;
  @IsOptional() @Transform(emptyToUndefined) @IsString() MODAL_ENVIRONMENT?: string;
  @IsOptional() @IsString() MODAL_S3_SECRET_NAME: string = 's3-bucket';
  @IsOptional() @IsString() MODAL_BUCKET_MOUNT_PATH: string = '/mnt/s3';
  @IsOptional() @Transform(toInt) @IsInt() @Min(1) MODAL_CALL_TIMEOUT_SECONDS: number = 60;
}

export class ConfigValidationError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigValidationError';
  }
}

export function validateEnvironment(env: Record<string, string | undefined>): EnvironmentVariables {
  const parsed = plainToInstance(EnvironmentVariables, { ...env }, { exposeDefaultValues: true });
  const errors = validateSync(parsed, { skipMissingProperties: false, forbidUnknownValues: false });
  if (errors.length > 0) {
    const problems = errors.flatMap((error) =>
      Object.values(error.constraints ?? { invalid: `${error.property} is invalid` }).map((message) =>
        message.startsWith(error.property) ? message : `${error.property}: ${message}`,
      ),
    );
    throw new ConfigValidationError(problems);
  }
  return parsed;
}
