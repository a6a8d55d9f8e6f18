import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { EnvironmentVariables, validateEnvironment } from './environment';

/** Typed configuration, built once at boot from the validated environment. Injected by class. */
export class AppConfig {
  /** trustProxy: Express' `trust proxy` (hops, addresses or subnets); undefined = X-Forwarded-For is ignored. */
  readonly http: { port: number; host: string; bodyLimit: string; trustProxy?: boolean | number | string };
  readonly dataDir: string;
  /** Names this process in every log line, in /api/health and in DATA_DIR's lock (INSTANCE_ID, or generated at start). */
  readonly instanceId: string;
  /** Below this many free bytes on DATA_DIR's filesystem, health reports its disk as down. */
  readonly dataDirMinFreeBytes: number;
  readonly database: { url?: string };
  readonly auth: {
    jwtSecret?: string;
    jwtExpiresInSeconds: number;
    adminEmail?: string;
    adminPassword?: string;
    loginRateLimit: number;
    loginRateWindowSeconds: number;
  };
  readonly logLevel: string;
  /** Cap of the log lines kept while stdout cannot be written; beyond it lines are dropped and counted. */
  readonly logBufferLimitBytes: number;
  readonly sandbox: {
    provider: 'local' | 'modal';
    imagesDir: string;
    secretsFile?: string;
    defaultTimeoutSeconds: number;
    maxTimeoutSeconds: number;
    maxProcesses: number;
    memoryLimitMb: number;
    cpuLimit: number;
    diskLimitMb: number;
    /** Host uid/gid range that sandbox ids 0… map to. */
    uidBase: number;
    uidCount: number;
    execOutputLimitBytes: number;
    execDefaultTimeoutSeconds: number;
    sweepIntervalSeconds: number;
    bwrapBin: string;
    claudeBin: string;
    /** The CLI's musl build, placed into sandboxes on musl images (claudeBin is the build of the host's libc). */
    claudeBinMusl: string;
    /** Registry images of the local engine. */
    registry: { authFile?: string; pullPolicy: 'if-not-present' | 'always' | 'never'; insecure: string[]; /** IMAGE_CACHE_MAX_GB in bytes; unset = no cap. */ cacheMaxBytes?: number };
  };
  /** Model credentials and Claude settings; only ever passed to the Claude process. */
  readonly claude: {
    credentials: Record<string, string>;
    model?: string;
    idleTimeoutSeconds: number;
    leaseSeconds: number;
    defaultTimeoutSeconds: number;
    maxPromptChars: number;
    sseHeartbeatSeconds: number;
  };
  /** The model gateway: loopback port for local sandboxes, public URL for Modal's. */
  readonly modelGateway: { port: number; publicUrl?: string };
  readonly storage: {
    provider: 'local' | 's3';
    rootDir: string;
    s3: { endpoint?: string; region: string; accessKeyId?: string; secretAccessKey?: string; forcePathStyle: boolean };
    defaultBucket: string;
    allowedBuckets: string[];
    fileUploadLimitBytes: number;
  };
  readonly modal: {
    tokenId?: string;
    tokenSecret?: string;
    environment?: string;
    s3SecretName: string;
    bucketMountPath: string;
    callTimeoutSeconds: number;
  };

  constructor(env: EnvironmentVariables) {
    this.http = { port: env.PORT, host: env.HOST, bodyLimit: env.BODY_LIMIT, trustProxy: trustProxySetting(env.TRUST_PROXY) };
    this.dataDir = resolve(env.DATA_DIR);
    this.instanceId = env.INSTANCE_ID ?? generatedInstanceId();
    this.dataDirMinFreeBytes = env.DATA_DIR_MIN_FREE_MB * 1024 * 1024;
    this.database = { url: env.DATABASE_URL };
    this.auth = {
      jwtSecret: env.JWT_SECRET,
      jwtExpiresInSeconds: env.JWT_EXPIRES_IN_SECONDS,
      adminEmail: env.ADMIN_EMAIL,
      adminPassword: env.ADMIN_PASSWORD,
      loginRateLimit: env.LOGIN_RATE_LIMIT,
      loginRateWindowSeconds: env.LOGIN_RATE_WINDOW_SECONDS,
    };
    this.logLevel = env.LOG_LEVEL;
    this.logBufferLimitBytes = env.LOG_BUFFER_LIMIT_BYTES;
    this.sandbox = {
      provider: env.SANDBOX_PROVIDER,
      imagesDir: resolve(env.IMAGES_DIR ?? join(this.dataDir, 'images')),
      secretsFile: env.SECRETS_FILE ? resolve(env.SECRETS_FILE) : undefined,
      defaultTimeoutSeconds: Math.min(env.SANDBOX_DEFAULT_TIMEOUT_SECONDS, env.SANDBOX_MAX_TIMEOUT_SECONDS),
      maxTimeoutSeconds: env.SANDBOX_MAX_TIMEOUT_SECONDS,
      maxProcesses: env.SANDBOX_MAX_PROCESSES,
      memoryLimitMb: env.SANDBOX_MEMORY_LIMIT_MB,
      cpuLimit: env.SANDBOX_CPU_LIMIT,
      diskLimitMb: env.SANDBOX_DISK_LIMIT_MB,
      uidBase: env.SANDBOX_UID_BASE,
      uidCount: env.SANDBOX_UID_COUNT,
      execOutputLimitBytes: env.EXEC_OUTPUT_LIMIT_BYTES,
      execDefaultTimeoutSeconds: env.EXEC_DEFAULT_TIMEOUT_SECONDS,
      sweepIntervalSeconds: env.SANDBOX_SWEEP_INTERVAL_SECONDS,
      bwrapBin: env.BWRAP_BIN,
      claudeBin: resolve(env.CLAUDE_BIN ?? bundledClaudeBinary()),
      claudeBinMusl: resolve(env.CLAUDE_BIN_MUSL ?? fetchedMuslClaudeBinary()),
      registry: {
        authFile: env.REGISTRY_AUTH_FILE ? resolve(env.REGISTRY_AUTH_FILE) : undefined,
        pullPolicy: env.IMAGE_PULL_POLICY,
        insecure: (env.REGISTRY_INSECURE ?? '').split(',').map((entry) => entry.trim().toLowerCase()).filter(Boolean),
        cacheMaxBytes: env.IMAGE_CACHE_MAX_GB === undefined ? undefined : Math.floor(env.IMAGE_CACHE_MAX_GB * 1024 ** 3),
      },
    };
    this.claude = {
      credentials: pickDefined({
        ANTHROPIC_API_KEY: env.ANTHROPIC_API_KEY,
        ANTHROPIC_AUTH_TOKEN: env.ANTHROPIC_AUTH_TOKEN,
        ANTHROPIC_BASE_URL: env.ANTHROPIC_BASE_URL,
        CLAUDE_CODE_USE_BEDROCK: env.CLAUDE_CODE_USE_BEDROCK,
        AWS_REGION: env.AWS_REGION,
        AWS_BEARER_TOKEN_BEDROCK: env.AWS_BEARER_TOKEN_BEDROCK,
        AWS_ACCESS_KEY_ID: env.AWS_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY: env.AWS_SECRET_ACCESS_KEY,
        AWS_SESSION_TOKEN: env.AWS_SESSION_TOKEN,
        CLAUDE_CODE_USE_VERTEX: env.CLAUDE_CODE_USE_VERTEX,
        CLOUD_ML_REGION: env.CLOUD_ML_REGION,
        ANTHROPIC_VERTEX_PROJECT_ID: env.ANTHROPIC_VERTEX_PROJECT_ID,
      }),
      model: env.ANTHROPIC_MODEL,
      idleTimeoutSeconds: env.RUN_IDLE_TIMEOUT_SECONDS,
      leaseSeconds: env.RUN_LEASE_SECONDS,
      defaultTimeoutSeconds: env.RUN_DEFAULT_TIMEOUT_SECONDS,
      maxPromptChars: env.RUN_MAX_PROMPT_CHARS,
      sseHeartbeatSeconds: env.SSE_HEARTBEAT_SECONDS,
    };
    this.modelGateway = { port: env.MODEL_GATEWAY_PORT, publicUrl: env.MODEL_GATEWAY_PUBLIC_URL?.replace(/\/+$/, '') };
    this.storage = {
      provider: env.STORAGE_PROVIDER,
      rootDir: join(this.dataDir, 'storage'),
      s3: {
        endpoint: env.S3_ENDPOINT,
        region: env.S3_REGION,
        accessKeyId: env.S3_ACCESS_KEY_ID,
        secretAccessKey: env.S3_SECRET_ACCESS_KEY,
        forcePathStyle: env.S3_FORCE_PATH_STYLE === 'true' || env.S3_FORCE_PATH_STYLE === '1',
      },
      defaultBucket: env.S3_DEFAULT_BUCKET,
      allowedBuckets: env.STORAGE_ALLOWED_BUCKETS
        ? env.STORAGE_ALLOWED_BUCKETS.split(',').map((bucket) => bucket.trim()).filter(Boolean)
        : [env.S3_DEFAULT_BUCKET],
      fileUploadLimitBytes: env.FILE_UPLOAD_LIMIT_BYTES,
    };
    this.modal = {
      tokenId: env.MODAL_TOKEN_ID,
      tokenSecret: env.MODAL_TOKEN_SECRET,
      environment: env.MODAL_ENVIRONMENT,
      s3SecretName: env.MODAL_S3_SECRET_NAME,
      bucketMountPath: env.MODAL_BUCKET_MOUNT_PATH,
      callTimeoutSeconds: env.MODAL_CALL_TIMEOUT_SECONDS,
    };
  }

  static fromEnvironment(env: Record<string, string | undefined>): AppConfig {
    return new AppConfig(validateEnvironment(env));
  }
}

/** `<hostname>-<6 hex>`: tells instances on one host apart, and a restarted process from its predecessor. */
export function generatedInstanceId(host: string = hostname()): string {
  const name = host.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 48) || 'instance';
  return `${name}-${randomBytes(3).toString('hex')}`;
}

function pickDefined(values: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).filter((entry): entry is [string, string] => entry[1] !== undefined));
}

/** The Claude Code CLI of the pinned npm dependency. */
function bundledClaudeBinary(): string {
  return join(dirname(require.resolve('@anthropic-ai/claude-code/package.json')), 'bin', 'claude.exe');
}

/** Where scripts/fetch-claude-musl.sh puts the musl build of the pinned CLI (npm installs only the host libc's build). */
function fetchedMuslClaudeBinary(): string {
  const { version } = require('@anthropic-ai/claude-code/package.json') as { version: string };
  return join(projectRoot(), '.cache', 'claude-code', `claude-code-linux-${process.arch}-musl-${version}`, 'claude');
}

/** The nearest directory above this file holding a package.json (from src/ or from dist/src/). */
function projectRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/** `2` → hop count, `true` → every hop, otherwise Express' list of addresses/subnets/names (`loopback, 10.0.0.0/8`). */
function trustProxySetting(value: string | undefined): boolean | number | string | undefined {
  if (value === undefined || value === 'false') return undefined;
  if (value === 'true') return true;
  return /^\d+$/.test(value) ? Number(value) : value;
}
