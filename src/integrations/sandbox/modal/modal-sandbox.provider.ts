import { Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { App, CloudBucketMount, SandboxCreateParams, SandboxExecParams, Secret, Volume } from 'modal';
import { DeadlineExceededError, UnavailableError } from '../../../common/domain-error';
import { AppConfig } from '../../../config/app-config';
import { normalizeKeyPrefix } from '../../../common/key-prefix';
import {
  type ExecRequest,
  reportProgress,
  type SandboxHandle,
  type SandboxNetwork,
  SandboxProvider,
  type SandboxProcess,
  type SandboxSpec,
  type SandboxState,
  type SecretRef,
  type VolumeAccess,
} from '../sandbox-provider';
import {
  ProviderConflictError,
  ProviderNotFoundError,
  type ProviderStep,
  ProviderUnavailableError,
  SandboxGoneError,
  SecretNotFoundError,
  UnsupportedNetworkPolicyError,
} from '../sandbox-provider.errors';
import { createModalClient, isModalConfigured, type ModalClientLike, type ModalProcessLike, type ModalSandboxLike, type ModalSandboxResult } from './modal-client';
import { type ModalCall, withDeadline } from './modal-errors';
import { EXEC_MARKER_ENV, killByMarkerArgv, ModalExecProcess } from './modal-exec-process';
import { buildModalImage } from './modal-image';
import { ModalVolumeAccess } from './modal-volume-access';

/** A sandbox this instance created or re-attached to, with what its files API needs. */
interface TrackedSandbox {
  sandbox: ModalSandboxLike;
  accountId: string;
  volumeName: string;
  mountPath: string;
  workdir: string;
}

/** Exit codes of a finished Modal sandbox (sandbox.poll()). */
const SANDBOX_TIMEOUT_EXIT_CODE = 124;
const SANDBOX_KILLED_EXIT_CODE = 137;

/**
 * Modal volume names are global to the workspace, so ours are namespaced by account: the default
 * volume is `volume-{accountId}`, any other `{accountId}-{name}`.
 */
export function modalVolumeName(accountId: string, volumeName: string): string {
  return volumeName === 'default' ? `volume-${accountId}` : `${accountId}-${volumeName}`;
}

export function modalAppName(accountId: string): string {
  return `app-${accountId}`;
}

/** Sandboxes on Modal through the official JS SDK (modal@0.11.1): an app per account, named volumes. */
@Injectable()
export class ModalSandboxProvider extends SandboxProvider implements OnModuleDestroy {
  readonly kind = 'modal' as const;
  private readonly logger = new Logger(ModalSandboxProvider.name);
  private readonly apps = new Map<string, Promise<App>>();
  private readonly volumes = new Map<string, Promise<Volume>>();
  private readonly tracked = new Map<string, TrackedSandbox>();
  private client?: ModalClientLike;
  private readonly ownsClient: boolean;
  private readonly call: ModalCall = (step, what, work, seconds = this.config.modal.callTimeoutSeconds) =>
    withDeadline(step, what, seconds, this.logger, work);

  /** `client`: a Modal client made elsewhere (the specs' strict fakes); by default one is made from AppConfig on first use. */
  constructor(private readonly config: AppConfig, client?: ModalClientLike) {
    super();
    this.client = client;
    this.ownsClient = client === undefined;
  }

  isConfigured(): boolean {
    return this.client !== undefined || isModalConfigured(this.config);
  }

  async ensureApp(accountId: string): Promise<void> {
    await this.app(accountId);
  }

  async ensureVolume(accountId: string, volumeName: string): Promise<void> {
    await this.volumeOf(accountId, volumeName);
  }

  /** On Modal a name refers to a Modal Secret of the workspace first, then to SECRETS_FILE. */
  override async assertSecretsExist(secrets: SecretRef[]): Promise<void> {
    await Promise.all(secrets.map((secret) => this.secretOf(secret)));
  }

  /**
   * Outbound CIDRs map onto Modal; domains are refused. The SDK does have outboundDomainAllowlist, but
   * its matching (apex vs wildcard, blocked addresses, HTTP vs TLS) is unverified against ours and the
   * fake control plane ignores it, so accepting it would promise a policy nobody has checked.
   */
  override assertNetworkSupported(network: SandboxNetwork): void {
    if (network.mode === 'allowlist' && network.allowedDomains.length > 0) {
      throw new UnsupportedNetworkPolicyError('allowed_domains', 'the Modal engine does not support a domain allowlist; use cidr_allowlist, or network "internet"');
    }
  }

  async create(spec: SandboxSpec): Promise<SandboxHandle> {
    this.assertNetworkSupported(spec.network);
    const app = await this.app(spec.accountId);
    const modal = this.modal('sandbox');
    const image = await buildModalImage(modal, app, spec, this.call);
    const volume = await this.volumeOf(spec.accountId, spec.volumeName);
    const secrets = await Promise.all(spec.secrets.map((secret) => this.secretOf(secret)));
    const bucketMount = spec.bucketMount && (await this.bucketMount(spec.bucketMount));
    reportProgress(spec.onProgress, { phase: 'starting' });
    const params: SandboxCreateParams = {
      workdir: spec.workdir,
      env: spec.env,
      volumes: { [spec.volumeMountPath]: volume },
      timeoutMs: wholeSecondsMs(spec.timeoutSeconds),
      tags: { account_id: spec.accountId, sandbox_id: spec.sandboxId },
      ...(secrets.length > 0 ? { secrets } : {}),
      ...(bucketMount ? { cloudBucketMounts: { [this.config.modal.bucketMountPath]: bucketMount } } : {}),
      ...(spec.idleTimeoutSeconds ? { idleTimeoutMs: wholeSecondsMs(this.idleBackstopSeconds(spec.idleTimeoutSeconds)) } : {}),
      ...networkParams(spec.network),
    };
    const sandbox = await this.call('sandbox', 'sandbox creation', () => modal.sandboxes.create(app, image, params)).catch((error: unknown) => {
      // A volume deleted in Modal since it was looked up is looked up (and created) again next time.
      if (error instanceof ProviderNotFoundError) this.volumes.delete(modalVolumeName(spec.accountId, spec.volumeName));
      throw error;
    });
    this.track(sandbox, spec);
    this.logger.log(`created Modal sandbox ${sandbox.sandboxId} for sandbox ${spec.sandboxId} of account ${spec.accountId}`);
    return {
      providerSandboxId: sandbox.sandboxId,
      limits: {
        lifetime_seconds: spec.timeoutSeconds,
        max_processes: null,
        memory_bytes: null,
        cpu_cores: null,
        disk_bytes: null,
        exec_output_bytes: this.config.sandbox.execOutputLimitBytes,
      },
    };
  }

  async exec(providerSandboxId: string, request: ExecRequest): Promise<SandboxProcess> {
    const tracked = this.trackedOrGone(providerSandboxId);
    const marker = randomUUID();
    const timeoutMs = request.timeoutSeconds ? wholeSecondsMs(request.timeoutSeconds) : undefined;
    const secretEnv = request.secretEnv && Object.keys(request.secretEnv).length > 0 ? request.secretEnv : undefined;
    const credentials = secretEnv && (await this.call('secret', 'exec credentials', () => this.modal('secret').secrets.fromObject(secretEnv)));
    const started = await this.startExec(tracked.sandbox, request.argv, {
      workdir: request.workdir ?? tracked.workdir,
      env: { ...request.env, [EXEC_MARKER_ENV]: marker },
      ...(credentials ? { secrets: [credentials] } : {}),
      ...(timeoutMs ? { timeoutMs } : {}),
    }).catch((error: unknown) => this.goneIfFinished(providerSandboxId, error));
    return new ModalExecProcess(started, { timeoutMs, logger: this.logger, kill: () => this.killExec(tracked.sandbox, marker) });
  }

  async status(providerSandboxId: string): Promise<SandboxState> {
    const state = await this.stateOf(providerSandboxId);
    const tracked = this.tracked.get(providerSandboxId);
    if (tracked && state.status !== 'running') this.forget(providerSandboxId, tracked.sandbox);
    return state;
  }

  async terminate(providerSandboxId: string): Promise<void> {
    const sandbox = this.tracked.get(providerSandboxId)?.sandbox ?? (await this.lookUp(providerSandboxId));
    if (!sandbox) return;
    try {
      await this.call('sandbox', 'sandbox termination', () => sandbox.terminate());
    } catch (error) {
      if (!(error instanceof ProviderNotFoundError)) throw error;
    }
    this.forget(providerSandboxId, sandbox);
    this.logger.log(`terminated Modal sandbox ${providerSandboxId}`);
  }

  /** Transient failures are retried; one that persists is thrown, never taken for the sandbox's end. */
  async reattach(providerSandboxId: string, spec: SandboxSpec): Promise<SandboxState> {
    const state = await retried(() => this.stateOf(providerSandboxId), REATTACH_ATTEMPTS);
    const tracked = this.tracked.get(providerSandboxId);
    if (state.status !== 'running') {
      if (tracked) this.forget(providerSandboxId, tracked.sandbox);
      return state;
    }
    if (!tracked) this.track(await this.handleOf(providerSandboxId), spec);
    this.logger.log(`re-attached to Modal sandbox ${providerSandboxId} of sandbox ${spec.sandboxId}`);
    return state;
  }

  /**
   * The account's running sandboxes, listed within its app (`app-{accountId}`) and by the tag every
   * sandbox we create carries. Scoped by app id, the listing covers V1 and V2 sandboxes alike
   * (SandboxListV2); an account whose app does not exist has none.
   */
  override async runningSandboxIds(accountId: string): Promise<string[]> {
    const appId = await this.existingAppId(accountId);
    if (!appId) return [];
    const modal = this.modal('sandbox');
    return this.call('sandbox', 'sandbox listing', async () => {
      const ids: string[] = [];
      for await (const sandbox of modal.sandboxes.experimentalList({ appId, tags: { account_id: accountId } })) ids.push(sandbox.sandboxId);
      return ids;
    });
  }

  /**
   * The service ends an idle sandbox itself, after a final snapshot (its sweep); Modal's own idle
   * timeout, which would end it without one, is only the backstop for a service that is down:
   * later than the sweep can act.
   */
  private idleBackstopSeconds(idleTimeoutSeconds: number): number {
    return idleTimeoutSeconds + Math.max(IDLE_BACKSTOP_MIN_SECONDS, 3 * this.config.sandbox.sweepIntervalSeconds);
  }

  /** Modal's sandboxes run in Modal's cloud: they reach the gateway only at a public URL, when one is configured. */
  modelGatewayUrl(): string | null {
    return this.config.modelGateway.publicUrl ?? null;
  }

  volume(accountId: string, volumeName: string, providerSandboxId?: string): VolumeAccess {
    if (!providerSandboxId) {
      throw new ProviderConflictError('filesystem', `on Modal the files of volume ${volumeName} are reached through a running sandbox that mounts it, and none was given`);
    }
    const tracked = this.trackedOrGone(providerSandboxId);
    if (tracked.accountId !== accountId || tracked.volumeName !== volumeName) {
      throw new ProviderConflictError('filesystem', `sandbox ${providerSandboxId} does not mount volume ${volumeName}`);
    }
    return new ModalVolumeAccess(tracked.sandbox, tracked.mountPath, this.call, this.config.modal.callTimeoutSeconds);
  }

  /** Leaves the sandboxes running (a restarted service re-attaches to them) and closes the client. */
  onModuleDestroy(): void {
    for (const [id, { sandbox }] of this.tracked) this.forget(id, sandbox);
    if (this.ownsClient) this.client?.close?.();
  }

  private modal(step: ProviderStep): ModalClientLike {
    if (this.client) return this.client;
    if (!isModalConfigured(this.config)) {
      this.logger.error('Modal is not configured: set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET');
      throw new ProviderUnavailableError(step, 'the sandbox engine is not available');
    }
    this.client = createModalClient(this.config, this.logger);
    return this.client;
  }

  /** How the control plane says the sandbox is: its GenericResult tells a timeout from an idle timeout, which poll()'s exit code does not. */
  private async stateOf(providerSandboxId: string): Promise<SandboxState> {
    const controlPlane = this.modal('sandbox').cpClient;
    const request = { sandboxId: providerSandboxId, timeout: 0 };
    try {
      const { result } = await this.call('sandbox', 'sandbox status', () =>
        isV1SandboxId(providerSandboxId) ? controlPlane.sandboxWait(request) : controlPlane.sandboxWaitV2(request),
      );
      return sandboxState(result);
    } catch (error) {
      if (error instanceof ProviderNotFoundError) return { status: 'terminated', exitReason: 'not_found' };
      throw error;
    }
  }

  private handleOf(providerSandboxId: string): Promise<ModalSandboxLike> {
    return this.call('sandbox', 'sandbox lookup', () => this.modal('sandbox').sandboxes.fromId(providerSandboxId));
  }

  /** The account's app id, without creating the app; undefined when it does not exist. */
  private async existingAppId(accountId: string): Promise<string | undefined> {
    const name = modalAppName(accountId);
    try {
      const app = await (this.apps.get(accountId) ?? this.call('app', `app ${name}`, () => this.modal('app').apps.fromName(name)));
      return app.appId;
    } catch (error) {
      if (error instanceof ProviderNotFoundError) return undefined;
      throw error;
    }
  }

  /** A Modal Secret of that name; failing that, the values SECRETS_FILE gives it, as an ephemeral secret. */
  private async secretOf(secret: SecretRef): Promise<Secret> {
    const modal = this.modal('secret');
    try {
      return await this.call('secret', `secret ${secret.name}`, () => modal.secrets.fromName(secret.name));
    } catch (error) {
      if (!(error instanceof ProviderNotFoundError)) throw error;
    }
    const { values } = secret;
    if (!values) throw new SecretNotFoundError(secret.name, 'neither a Modal Secret nor in SECRETS_FILE');
    return this.call('secret', `secret ${secret.name}`, () => modal.secrets.fromObject(values));
  }

  /** Every exec's stdin is closed at once: nothing we run is given input, and one that reads it (Claude Code waits 3 s for it) must see its end. */
  private async startExec(sandbox: ModalSandboxLike, argv: string[], params: Omit<SandboxExecParams, 'mode'>): Promise<ModalProcessLike> {
    const started = await this.call('exec', 'exec start', () => sandbox.exec(argv, { ...params, mode: 'binary' }));
    await this.call('exec', 'exec stdin close', () => started.stdin.close()).catch((error: unknown) =>
      this.logger.warn(`closing the stdin of an exec failed: ${(error as Error).message}`),
    );
    return started;
  }

  private app(accountId: string): Promise<App> {
    let app = this.apps.get(accountId);
    if (!app) {
      const name = modalAppName(accountId);
      app = this.call('app', `app ${name}`, () => this.modal('app').apps.fromName(name, { createIfMissing: true }));
      app.catch(() => this.apps.delete(accountId));
      this.apps.set(accountId, app);
    }
    return app;
  }

  /** Looked up once per service start (ensureVolume, then create, would otherwise fetch it twice); a failed lookup is not kept. */
  private volumeOf(accountId: string, volumeName: string): Promise<Volume> {
    const name = modalVolumeName(accountId, volumeName);
    let volume = this.volumes.get(name);
    if (!volume) {
      volume = this.call('volume', `volume ${name}`, () => this.modal('volume').volumes.fromName(name, { createIfMissing: true }));
      volume.catch(() => this.volumes.delete(name));
      this.volumes.set(name, volume);
    }
    return volume;
  }

  private async bucketMount(mount: NonNullable<SandboxSpec['bucketMount']>): Promise<CloudBucketMount> {
    const modal = this.modal('volume');
    const secretName = this.config.modal.s3SecretName;
    const secret = await this.call('secret', `secret ${secretName}`, () => modal.secrets.fromName(secretName));
    const endpoint = this.config.storage.s3.endpoint;
    return this.call('volume', `bucket mount ${mount.bucket}`, async () =>
      modal.cloudBucketMounts.create(mount.bucket, {
        secret,
        readOnly: mount.readOnly,
        ...(mount.keyPrefix ? { keyPrefix: normalizeKeyPrefix(mount.keyPrefix) } : {}),
        ...(endpoint ? { bucketEndpointUrl: endpoint } : {}),
      }),
    );
  }

  private async killExec(sandbox: ModalSandboxLike, marker: string): Promise<void> {
    const killer = await this.startExec(sandbox, killByMarkerArgv(marker), {});
    const exitCode = await this.call('exec', 'exec kill', () => killer.wait());
    if (exitCode !== 0) this.logger.warn(`killing an exec in a Modal sandbox exited with ${exitCode}`);
  }

  /** An exec refused because the sandbox has ended (its timeout, say) is reported as such. */
  private async goneIfFinished(providerSandboxId: string, error: unknown): Promise<never> {
    if (error instanceof ProviderNotFoundError || error instanceof ProviderConflictError) {
      if ((await this.status(providerSandboxId)).status !== 'running') throw new SandboxGoneError(providerSandboxId);
    }
    throw error;
  }

  private trackedOrGone(providerSandboxId: string): TrackedSandbox {
    const tracked = this.tracked.get(providerSandboxId);
    if (!tracked) throw new SandboxGoneError(providerSandboxId);
    return tracked;
  }

  /** A handle on a sandbox this instance does not track, or null when Modal does not know it. */
  private async lookUp(providerSandboxId: string): Promise<ModalSandboxLike | null> {
    try {
      return await this.handleOf(providerSandboxId);
    } catch (error) {
      if (error instanceof ProviderNotFoundError) return null;
      throw error;
    }
  }

  private track(sandbox: ModalSandboxLike, spec: SandboxSpec): void {
    this.tracked.set(sandbox.sandboxId, {
      sandbox,
      accountId: spec.accountId,
      volumeName: spec.volumeName,
      mountPath: spec.volumeMountPath,
      workdir: spec.workdir,
    });
  }

  private forget(providerSandboxId: string, sandbox: ModalSandboxLike): void {
    this.tracked.delete(providerSandboxId);
    try {
      sandbox.detach();
    } catch (error) {
      this.logger.warn(`detaching from Modal sandbox ${providerSandboxId} failed: ${(error as Error).message}`);
    }
  }
}

/** Modal's GenericResult statuses (modal_proto api.proto GenericResult.GenericStatus). */
const GENERIC_STATUS = { unspecified: 0, success: 1, failure: 2, terminated: 3, timeout: 4, initFailure: 5, internalFailure: 6, idleTimeout: 7, memoryEviction: 8 } as const;

/** How a sandbox is, from its result: none (or unspecified) while it runs. Exit codes as the SDK's poll() gives them. */
export function sandboxState(result: ModalSandboxResult | undefined): SandboxState {
  if (!result || result.status === GENERIC_STATUS.unspecified) return { status: 'running' };
  switch (result.status) {
    case GENERIC_STATUS.timeout:
      return { status: 'terminated', exitReason: 'timeout', exitCode: SANDBOX_TIMEOUT_EXIT_CODE };
    case GENERIC_STATUS.idleTimeout:
      return { status: 'terminated', exitReason: 'idle_timeout' };
    case GENERIC_STATUS.terminated:
      return { status: 'terminated', exitReason: 'terminated', exitCode: SANDBOX_KILLED_EXIT_CODE };
    case GENERIC_STATUS.success:
    case GENERIC_STATUS.failure:
      return { status: 'terminated', exitReason: 'exited', exitCode: result.exitcode };
    case GENERIC_STATUS.memoryEviction:
      return { status: 'terminated', exitReason: 'evicted' };
    case GENERIC_STATUS.initFailure:
      return { status: 'error', exitReason: 'start_failed' };
    default:
      return { status: 'error', exitReason: 'engine_failure' };
  }
}

const V1_SANDBOX_ID = /^sb-[0-9A-Za-z]{22}$/;

/** The SDK's own rule (getSandboxVersion): V1 ids are `sb-` and 22 base62 characters; any other id is V2. */
export function isV1SandboxId(providerSandboxId: string): boolean {
  return V1_SANDBOX_ID.test(providerSandboxId);
}

const IDLE_BACKSTOP_MIN_SECONDS = 60;
const REATTACH_ATTEMPTS = 4;
const REATTACH_RETRY_MS = 500;

/** Retries a step that failed for a reason worth trying again (the engine unreachable or slow). */
async function retried<T>(step: () => Promise<T>, attempts: number): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await step();
    } catch (error) {
      if (attempt >= attempts || !(error instanceof UnavailableError || error instanceof DeadlineExceededError)) throw error;
      await new Promise((resolve) => setTimeout(resolve, REATTACH_RETRY_MS * attempt));
    }
  }
}

/** internet is Modal's default; an allowlist with no CIDRs blocks all outbound traffic. */
function networkParams(network: SandboxNetwork): Pick<SandboxCreateParams, 'blockNetwork' | 'outboundCidrAllowlist'> {
  if (network.mode === 'none') return { blockNetwork: true };
  if (network.mode === 'allowlist') return { outboundCidrAllowlist: [...network.cidrAllowlist] };
  return {};
}

/** The SDK takes durations in milliseconds that must be whole seconds. */
function wholeSecondsMs(seconds: number): number {
  return Math.ceil(seconds) * 1000;
}
