import { Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { App, CloudBucketMount, SandboxCreateParams, Volume } from 'modal';
import { AppConfig } from '../../../config/app-config';
import { normalizeKeyPrefix } from '../../../common/key-prefix';
import {
  type ExecRequest,
  type SandboxHandle,
  type SandboxNetwork,
  SandboxProvider,
  type SandboxProcess,
  type SandboxSpec,
  type SandboxState,
  type VolumeAccess,
} from '../sandbox-provider';
import {
  ProviderConflictError,
  ProviderNotFoundError,
  type ProviderStep,
  ProviderUnavailableError,
  SandboxGoneError,
  UnsupportedNetworkPolicyError,
} from '../sandbox-provider.errors';
import { createModalClient, isModalConfigured, type ModalClientLike, type ModalSandboxLike } from './modal-client';
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
    const secrets = await Promise.all(spec.secrets.map(({ name }) => this.call('secret', `secret ${name}`, () => modal.secrets.fromName(name))));
    const bucketMount = spec.bucketMount && (await this.bucketMount(spec.bucketMount));
    const params: SandboxCreateParams = {
      workdir: spec.workdir,
      env: spec.env,
      volumes: { [spec.volumeMountPath]: volume },
      timeoutMs: wholeSecondsMs(spec.timeoutSeconds),
      tags: { account_id: spec.accountId, sandbox_id: spec.sandboxId },
      ...(secrets.length > 0 ? { secrets } : {}),
      ...(bucketMount ? { cloudBucketMounts: { [this.config.modal.bucketMountPath]: bucketMount } } : {}),
      ...(spec.idleTimeoutSeconds ? { idleTimeoutMs: wholeSecondsMs(spec.idleTimeoutSeconds) } : {}),
      ...networkParams(spec.network),
    };
    const sandbox = await this.call('sandbox', 'sandbox creation', () => modal.sandboxes.create(app, image, params));
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
    const started = await this.call('exec', 'exec start', () =>
      tracked.sandbox.exec(request.argv, {
        mode: 'binary',
        workdir: request.workdir ?? tracked.workdir,
        env: { ...request.env, [EXEC_MARKER_ENV]: marker },
        ...(credentials ? { secrets: [credentials] } : {}),
        ...(timeoutMs ? { timeoutMs } : {}),
      }),
    ).catch((error: unknown) => this.goneIfFinished(providerSandboxId, error));
    return new ModalExecProcess(started, { timeoutMs, logger: this.logger, kill: () => this.killExec(tracked.sandbox, marker) });
  }

  async status(providerSandboxId: string): Promise<SandboxState> {
    const tracked = this.tracked.get(providerSandboxId);
    const sandbox = tracked?.sandbox ?? (await this.lookUp(providerSandboxId));
    if (!sandbox) return { status: 'terminated', exitReason: 'not_found' };
    const exitCode = await this.call('sandbox', 'sandbox status', () => sandbox.poll());
    if (exitCode !== null || !tracked) this.forget(providerSandboxId, sandbox);
    return sandboxState(exitCode);
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

  async reattach(providerSandboxId: string, spec: SandboxSpec): Promise<SandboxState> {
    const sandbox = this.tracked.get(providerSandboxId)?.sandbox ?? (await this.lookUp(providerSandboxId));
    if (!sandbox) return { status: 'terminated', exitReason: 'not_found' };
    const exitCode = await this.call('sandbox', 'sandbox status', () => sandbox.poll());
    if (exitCode !== null) {
      this.forget(providerSandboxId, sandbox);
      return sandboxState(exitCode);
    }
    this.track(sandbox, spec);
    this.logger.log(`re-attached to Modal sandbox ${providerSandboxId} of sandbox ${spec.sandboxId}`);
    return { status: 'running' };
  }

  /** Every sandbox this service creates carries the account_id tag (see create). */
  override runningSandboxIds(accountId: string): Promise<string[]> {
    return this.reconcile({ account_id: accountId });
  }

  /** For boot-time reconciliation: ids of the running Modal sandboxes that carry all these tags. */
  async reconcile(tags: Record<string, string>): Promise<string[]> {
    const modal = this.modal('sandbox');
    return this.call('sandbox', 'sandbox listing', async () => {
      const ids: string[] = [];
      for await (const sandbox of modal.sandboxes.list({ tags })) ids.push(sandbox.sandboxId);
      return ids;
    });
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
    this.client = createModalClient(this.config);
    return this.client;
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

  private volumeOf(accountId: string, volumeName: string): Promise<Volume> {
    const name = modalVolumeName(accountId, volumeName);
    return this.call('volume', `volume ${name}`, () => this.modal('volume').volumes.fromName(name, { createIfMissing: true }));
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
    const exitCode = await this.call('exec', 'exec kill', async () => {
      const killer = await sandbox.exec(killByMarkerArgv(marker), { mode: 'binary' });
      return killer.wait();
    });
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
      return await this.call('sandbox', 'sandbox lookup', () => this.modal('sandbox').sandboxes.fromId(providerSandboxId));
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

/** What poll() reports: null while running, else the exit code of the sandbox. */
export function sandboxState(exitCode: number | null): SandboxState {
  if (exitCode === null) return { status: 'running' };
  if (exitCode === SANDBOX_TIMEOUT_EXIT_CODE) return { status: 'terminated', exitReason: 'timeout', exitCode };
  if (exitCode === SANDBOX_KILLED_EXIT_CODE) return { status: 'terminated', exitReason: 'terminated', exitCode };
  if (exitCode === 0) return { status: 'terminated', exitReason: 'exited', exitCode };
  return { status: 'error', exitReason: `exited with code ${exitCode}`, exitCode };
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
