import type { Readable } from 'node:stream';
import { ImageNotCachedError, SecretNotFoundError } from './sandbox-provider.errors';

/**
 * The sandbox engine behind the API, shaped after Modal's model (app per account, named volumes,
 * sandboxes with exec) so that the local bubblewrap engine and Modal are interchangeable.
 * Implementations translate their own failures into the errors in ./sandbox-provider.errors.ts.
 */
export abstract class SandboxProvider {
  abstract readonly kind: 'local' | 'modal';

  /** Whether the engine can be used at all (binaries present, credentials set); for health and tests. */
  abstract isConfigured(): boolean;

  /** Creates the account's app (`app-{account_id}`) on first use, reuses it afterwards. */
  abstract ensureApp(accountId: string): Promise<void>;

  /** Creates the named volume of an account when missing; every sandbox naming it shares it. */
  abstract ensureVolume(accountId: string, volumeName: string): Promise<void>;

  /** Starts a sandbox and returns once it is running (image steps done). */
  abstract create(spec: SandboxSpec): Promise<SandboxHandle>;

  /** Runs an argv (never a shell string) in a running sandbox. */
  abstract exec(providerSandboxId: string, request: ExecRequest): Promise<SandboxProcess>;

  abstract status(providerSandboxId: string): Promise<SandboxState>;

  /** Stops every process of the sandbox and releases its resources; idempotent. */
  abstract terminate(providerSandboxId: string): Promise<void>;

  /**
   * Refuses, with UnsupportedNetworkPolicyError, a policy this engine cannot enforce; called before
   * anything is created. By default every policy is supported.
   */
  assertNetworkSupported(_network: SandboxNetwork): void {}

  /**
   * Refuses, with SecretNotFoundError, a named secret this engine cannot supply; called before
   * anything is created. By default a secret must be defined in the service's SECRETS_FILE.
   */
  async assertSecretsExist(secrets: SecretRef[]): Promise<void> {
    const missing = secrets.find((secret) => secret.values === undefined);
    if (missing) throw new SecretNotFoundError(missing.name, 'SECRETS_FILE');
  }

  /**
   * After a service restart: re-attaches to a sandbox this service created earlier, which goes on
   * running (state `running`), or says how it ended while no service watched it.
   */
  abstract reattach(providerSandboxId: string, spec: SandboxSpec): Promise<SandboxState>;

  /**
   * For boot-time reconciliation: the engine's running sandboxes of an account, or undefined when
   * the engine cannot list them, so none can be found orphaned.
   */
  async runningSandboxIds(_accountId: string): Promise<string[] | undefined> {
    return undefined;
  }

  /**
   * The registry images this engine keeps in a cache of its own, or undefined when it keeps none
   * (Modal builds and keeps images in Modal).
   */
  async listImages(): Promise<CachedImage[] | undefined> {
    return undefined;
  }

  /** Removes a cached image: ImageNotCachedError when absent, ImageInUseError while a sandbox uses it. */
  async removeImage(digest: string): Promise<void> {
    throw new ImageNotCachedError(digest);
  }

  /**
   * The base URL at which processes in this engine's sandboxes reach the service's model gateway,
   * or null when they cannot (the Claude process is then handed the model credentials themselves).
   */
  abstract modelGatewayUrl(): string | null;

  /** Files of an account's volume, for snapshots, restore and the files API. */
  abstract volume(accountId: string, volumeName: string, providerSandboxId?: string): VolumeAccess;
}

/** A registry image in an engine's cache. */
export interface CachedImage {
  /** Manifest digest, `sha256:<hex>`. */
  digest: string;
  /** The reference it was pulled by (canonical form). */
  reference: string;
  sizeBytes: number;
  pulledAt: Date;
  /** When a sandbox was last created from it (its pull time if never). */
  lastUsedAt: Date;
  /** Whether a sandbox runs on it (set by the engine when listing). */
  inUse?: boolean;
}

export type SandboxNetworkMode = 'none' | 'internet' | 'allowlist';

/** What a sandbox may reach besides its own loopback and the service's model gateway. */
export interface SandboxNetwork {
  /** none: nothing; internet: public addresses; allowlist: only the two lists below. */
  mode: SandboxNetworkMode;
  /** allowlist: CIDRs reachable directly (through the NAT). */
  cidrAllowlist: string[];
  /** allowlist: host names (`*.example.com` wildcards) reachable through the egress HTTP(S) proxy. */
  allowedDomains: string[];
}

export interface SandboxSpec {
  /** Our id for the sandbox (tags, directory names, logs). */
  sandboxId: string;
  accountId: string;
  /** undefined or 'host' = the local host view / the default image; otherwise an image name. */
  imageBase?: string;
  /** Dockerfile lines: ENV, WORKDIR and RUN are honoured. Validated before reaching the provider. */
  dockerfileCommands: string[];
  volumeName: string;
  volumeMountPath: string;
  workdir: string;
  /** Plain environment of every process in the sandbox. */
  env: Record<string, string>;
  /** Named secrets from the service's configuration, resolved to their values. */
  secrets: SecretRef[];
  network: SandboxNetwork;
  timeoutSeconds: number;
  idleTimeoutSeconds?: number;
  /** Bucket mount for providers that mount object storage inside the sandbox (Modal). */
  bucketMount?: { bucket: string; keyPrefix: string; readOnly: boolean };
  /**
   * Told what create() is doing while it runs (pulling, unpacking, building step i of n, starting);
   * called synchronously by the engine and never awaited, so it must not throw nor block.
   */
  onProgress?: (progress: CreateProgress) => void;
}

export type CreateProgressPhase = 'pulling_image' | 'unpacking_image' | 'building' | 'starting';
export const CREATE_PROGRESS_PHASES: readonly CreateProgressPhase[] = ['pulling_image', 'unpacking_image', 'building', 'starting'];

/** Where a create stands: `building` counts the steps actually run (cached ones are skipped). */
export interface CreateProgress {
  phase: CreateProgressPhase;
  /** 1-based step being built, with steps the number of steps to build (building only). */
  step?: number;
  steps?: number;
  /** What is being pulled or built, e.g. the image reference or the instruction. */
  detail?: string;
}

export interface SecretRef {
  name: string;
  /** Values from the service's SECRETS_FILE, when it defines the name; an engine with a secret store of its own (Modal) looks there first. */
  values?: Record<string, string>;
}

export interface SandboxHandle {
  providerSandboxId: string;
  /** Which limits this engine actually enforces for the sandbox (reported by GET). */
  limits: EnforcedLimits;
}

export interface EnforcedLimits {
  lifetime_seconds: number;
  max_processes: number | null;
  memory_bytes: number | null;
  cpu_cores: number | null;
  /** Size of the sandbox's writable layer and of each of its volumes. */
  disk_bytes: number | null;
  exec_output_bytes: number;
}

export interface ExecRequest {
  argv: string[];
  env?: Record<string, string>;
  /** Environment only this process gets (model credentials); never logged. */
  secretEnv?: Record<string, string>;
  workdir?: string;
  timeoutSeconds?: number;
}

export interface SandboxProcess {
  /** Raw output as it is produced; read incrementally. */
  readonly stdout: Readable;
  readonly stderr: Readable;
  /** Resolves when the process has exited and its output streams have ended. */
  wait(): Promise<ExecExit>;
  /** Kills the process (and its children); the wait() promise then resolves. */
  kill(): Promise<void>;
}

export interface ExecExit {
  exitCode: number;
  /** The exec's own timeout fired. */
  timedOut: boolean;
}

export type SandboxState =
  | { status: 'running' }
  | { status: 'terminated' | 'error'; exitReason: string; exitCode?: number };

export interface VolumeEntry {
  name: string;
  /** Path relative to the volume root, '/'-separated, no leading slash. */
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
  mode: number;
  modifiedAt: Date;
  /** For symlinks: the link text, as stored. */
  target?: string;
}

/**
 * Confined access to one volume. Every path is relative to the volume root; paths that leave the
 * volume (`..`, absolute, through symlinks) are refused with PathOutsideVolumeError.
 */
export interface VolumeAccess {
  list(dir: string): Promise<VolumeEntry[]>;
  stat(path: string): Promise<VolumeEntry | null>;
  openRead(path: string): Promise<Readable>;
  /** Writes atomically (temp file + rename), creating parent directories. */
  write(path: string, content: Readable, mode?: number): Promise<{ bytes: number }>;
  mkdir(path: string, mode?: number): Promise<void>;
  symlink(path: string, target: string): Promise<void>;
  remove(path: string): Promise<void>;
  /** Yields every entry below dir (depth-first), symlinks reported, never followed. */
  walk(dir?: string): AsyncIterable<VolumeEntry>;
  /**
   * Whole-volume operations in a constant number of steps, for engines where every step is costly
   * (a Modal exec); engines whose steps are cheap (the local host filesystem) leave it out.
   */
  readonly bulk?: BulkVolumeAccess;
}

/** A volume entry; regular files may carry the SHA-256 of their content as the engine computed it. */
export interface InventoryEntry extends VolumeEntry {
  /** Computed where the volume is (inside the sandbox), so it is only a hint of what the content is. */
  sha256?: string;
}

/** One regular file as a bulk read delivers it; content is exactly `size` bytes long. */
export interface BulkFile {
  path: string;
  size: number;
  content: Readable;
}

export interface TreeDirectory {
  path: string;
  mode: number;
}

/** A file to write; its content is written only if it has exactly this size and SHA-256. */
export interface TreeFile {
  path: string;
  mode: number;
  size: number;
  sha256: string;
  open(): Promise<Readable>;
}

export interface TreeSymlink {
  path: string;
  target: string;
}

export interface TreeToWrite {
  directories: TreeDirectory[];
  files: TreeFile[];
  symlinks: TreeSymlink[];
}

export interface PathFailure {
  path: string;
  error: unknown;
}

/**
 * Every method answers null when the sandbox lacks the tools it needs (the caller then uses the
 * per-entry methods of VolumeAccess), before it has consumed anything it was given.
 */
export interface BulkVolumeAccess {
  /** Every entry below the root, in no particular order; symlinks reported, never followed. */
  inventory(): Promise<InventoryEntry[] | null>;
  /**
   * Hands each of these regular files to receive, one after the other (each content is read to its
   * end before the next file comes). Answers the files it did not deliver, or delivered from a read
   * it cannot vouch for (a file changed while read): the caller reads those one by one.
   */
  readFiles(files: { path: string; size: number }[], receive: (file: BulkFile) => Promise<void>): Promise<{ unread: string[] } | null>;
  /**
   * Writes the tree as the per-entry methods would: directories first (their final modes applied
   * last, so a read-only directory does not block its contents), then files, then symlinks. A file
   * whose content does not match its size and SHA-256 is never written. Answers the entries that
   * could not be written.
   */
  writeTree(tree: TreeToWrite): Promise<{ failures: PathFailure[] } | null>;
}

/** What engines call to report create progress: a listener that throws never fails the create. */
export function reportProgress(listener: ((progress: CreateProgress) => void) | undefined, progress: CreateProgress): void {
  try {
    listener?.(progress);
  } catch {
    // progress is informational only
  }
}
