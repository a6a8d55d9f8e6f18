import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, readFileSync, realpathSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import { Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { KeyedLock } from '../../../common/keyed-lock';
import { AppConfig } from '../../../config/app-config';
import { type DockerfileStep, parseDockerfileCommands } from '../dockerfile';
import { ModelGatewayEndpoint } from '../model-gateway-endpoint';
import {
  type CachedImage,
  type EnforcedLimits,
  type ExecRequest,
  reportProgress,
  type SandboxHandle,
  type SandboxProcess,
  SandboxProvider,
  type SandboxSpec,
  type SandboxState,
  type VolumeAccess,
} from '../sandbox-provider';
import { ImageNotCachedError, ImageStepFailedError, ProviderInvalidError, ProviderUnavailableError, SandboxGoneError } from '../sandbox-provider.errors';
import { prepareSandboxBase, type SandboxBase } from './host-base';
import { findExecutable, type HostTools, locateHostTools, locateSandboxHelper } from './host-tools';
import { ImageCache, imageCacheKey } from './image-cache';
import { prepareImageClaude } from './image-claude';
import { InheritedFdShield } from './inherited-fds';
import { exitCodeOf, LocalSandboxProcess, runCapturingTail, TIMEOUT_EXIT_CODE } from './local-sandbox.process';
import { LocalVolumeAccess } from './local-volume-access';
import { EgressProxy } from './egress-proxy';
import { blockedRangeContaining, parseCidr } from './egress-rules';
import { type CgroupHostOptions, SandboxCgroups, supervisorCgroupProcsFiles } from './sandbox-cgroups';
import { execHostScript, execStdinScript, type IdRange, isValidEnvName, launchArgv, type SandboxHelper, type VolumeSource } from './sandbox-commands';
import {
  applyConfigStep,
  exitedState,
  imageDefaultsOf,
  initialImageDefaults,
  type ProcessDefaults,
  sandboxDefaults,
  secretValues,
} from './sandbox-environment';
import { megabytes, mountSource, SandboxDisks } from './sandbox-disk';
import { SandboxLauncher } from './sandbox-launcher';
import { attachEgressFilter, egressRules, HOST_ADDRESS_IN_SANDBOX, hostAddressDenial, hostResolvers, ownHostAddresses, proxyEnvironment, SandboxNetworkStack } from './sandbox-network';
import { SandboxSpawner } from './sandbox-spawner';
import type { KeptExit } from './sandbox-spawner.helper';
import { isMountSafePath, type OverlayMount, ROOT_LAYER, SandboxDirs, sandboxFstab } from './sandbox-mounts';
import type { ImageConfig } from './oci-image-config';
import { hostPlatform, RegistryImageStore, registryToolFiles } from './registry-images';
import { RegistryTools } from './registry-tools';
import { HOST_SYSTEM_ENTRIES } from './sandbox-rootfs';

/** Account ids, volume names and image names become directory names. */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const SANDBOX_ID = /^sbx-[0-9a-f]{12}$/;
const STEP_OUTPUT_TAIL_BYTES = 4096;
const WARM_SANDBOXES = 2;
/** How long each step of stopping the engine may take before the service stops without it. */
const SHUTDOWN_STEP_MS = 15_000;
/** A spare exec process is spawned this long after the previous one was used, not in its way. */
const SPARE_DELAY_MS = 10;
const TOMBSTONE_SUFFIX = '.ended.json';
const HOST_ADDRESS_POLL_MS = 250;
const TOMBSTONE_KEEP_MS = 7 * 24 * 3600 * 1000;
/** How often the engine checks that the sandboxes it no longer hears from directly (re-attached ones) still run. */
const LIVENESS_POLL_MS = 1_000;
/** The NAT of one sandbox: one process (two while it attaches its filter); memory for many connections. */
const NAT_LIMITS = { maxProcesses: 4, memoryBytes: 256 * 1024 * 1024, cpuCores: 1 };

function hasCgroupV2(): boolean {
  return ['/sys/fs/cgroup/cgroup.controllers', '/sys/fs/cgroup/unified/cgroup.controllers'].some((file) => existsSync(file));
}

function natCgroupName(providerSandboxId: string): string {
  return `${providerSandboxId}.nat`;
}

/** A sandbox whose root is mounted, whose launcher waits for its parameters and its first exec process for its command. */
interface PreparedSandbox {
  id: string;
  dirs: SandboxDirs;
  overlays: OverlayMount[];
  cgroups: SandboxCgroups;
  /** The cgroups of the sandbox's NAT, which carry its egress filter. */
  natCgroups: SandboxCgroups;
  network: SandboxNetworkStack;
  launcher: SandboxLauncher;
  spare: Promise<LocalSandboxProcess>;
}

/** What image_base names: the host view, a root under IMAGES_DIR, or a pulled registry image (by digest). */
interface ResolvedImage {
  name: string;
  rootDir?: string;
  digest?: string;
  config?: ImageConfig;
}

interface LocalSandbox extends ProcessDefaults {
  id: string;
  dirs: SandboxDirs;
  cgroups: SandboxCgroups;
  natCgroups: SandboxCgroups;
  network?: SandboxNetworkStack;
  /** HTTP(S)_PROXY of an allowlist with domains: every process, image steps included, gets it. */
  networkEnv: Record<string, string>;
  /** Host pid of the sandbox's init, whose namespaces and root every exec enters. */
  initPid: number;
  /** Absent for a sandbox found still running after a restart. */
  launcher?: SandboxLauncher;
  /** An exec process waiting inside the sandbox for its command (or being spawned). */
  spare?: Promise<LocalSandboxProcess>;
  state: SandboxState;
  lifetimeTimer?: NodeJS.Timeout;
  stopping?: Promise<void>;
  /** The host addresses its egress filters deny (unknown after a restart until denied again). */
  deniedHostAddresses?: Set<string>;
}

/** Written once a sandbox runs; a sandbox directory without it was never handed out. */
interface PersistedState {
  initPid: number;
  expiresAt: number;
  accountId: string;
  /** The machine's boot id when it started: a different one now means the machine rebooted. */
  bootId: string;
  /** Its port of the egress proxy (allowlist with domains), re-opened after a restart. */
  proxyPort?: number;
  /** ENV/WORKDIR of its registry image, which the Dockerfile lines start from (the tag may name another image by now). */
  imageConfig?: ImageConfig;
  /** Digest of its registry image: the image cache never removes an image a running sandbox is on. */
  imageDigest?: string;
}

/**
 * The sandbox engine of a single host, built on bubblewrap. Each sandbox gets its own user
 * (identity-mapped), pid, ipc, uts and optionally net namespace; a root made of the host's system
 * directories (or an image under IMAGES_DIR) under private writable overlays, with a locked
 * read-only /proc; the account's volume bound read-write; cgroup v1 limits. One host-view sandbox
 * is kept prepared (root mounted, launcher waiting) so that creating one costs only its start.
 */
@Injectable()
export class LocalSandboxProvider extends SandboxProvider implements OnModuleInit, OnApplicationShutdown {
  readonly kind = 'local' as const;
  private readonly logger = new Logger(LocalSandboxProvider.name);
  private readonly sandboxes = new Map<string, LocalSandbox>();
  private readonly located: ReturnType<typeof locateHostTools>;
  private readonly helper: SandboxHelper | undefined;
  private readonly ids: IdRange;
  /** A host account using an id of the sandboxes' range, read once: a reason not to start. */
  private readonly accountInRange: string | undefined;
  private readonly imageCache: ImageCache;
  private readonly spawner: SandboxSpawner;
  private readonly egressProxy = new EgressProxy();
  private disksOnce?: SandboxDisks;
  private readonly volumeLocks = new KeyedLock();
  /** Volume filesystems this instance mounted in its mount namespace, unmounted when it stops. */
  private readonly mountedVolumes = new Set<string>();
  private sandboxBase?: Promise<SandboxBase>;
  private registryImagesOnce?: RegistryImageStore;
  private abandonedSwept?: Promise<void>;
  /** Plain host-view sandboxes prepared ahead (mounted, launcher waiting), oldest first. */
  private readonly warm: Array<Promise<PreparedSandbox>> = [];
  private closing = false;
  private cgroupHostOnce?: Promise<CgroupHostOptions>;
  private livenessTimer?: NodeJS.Timeout;
  private hostAddressTimer?: NodeJS.Timeout;
  private denyingNewAddresses?: Promise<void>;

  constructor(
    private readonly config: AppConfig,
    private readonly gateway = new ModelGatewayEndpoint(),
  ) {
    super();
    this.located = locateHostTools(config.sandbox.bwrapBin);
    this.helper = locateSandboxHelper();
    this.ids = { base: config.sandbox.uidBase, count: config.sandbox.uidCount };
    this.accountInRange = hostAccountInRange(this.ids);
    this.imageCache = new ImageCache(this.dataPath('image-cache'), this.located.tools.cp ?? 'cp');
    this.spawner = new SandboxSpawner(this.dataPath('spawner'), new InheritedFdShield(), () => supervisorCgroupProcsFiles());
  }

  /** Checked again on every call (health): a tool, the helper or the Claude CLI removed after start-up makes it false. */
  isConfigured(): boolean {
    return this.readinessProblem() === undefined;
  }

  /** For start-up: throws an error saying what to install or fix when this host cannot run sandboxes. */
  assertReady(): void {
    const problem = this.readinessProblem();
    if (problem) throw new ProviderUnavailableError('sandbox', problem);
  }

  /**
   * Leaves every sandbox running (the supervisor keeps them; the next service re-attaches) and
   * releases only what this service holds: prepared sandboxes, its volume mounts, its connection.
   * At application shutdown, after every module's onModuleDestroy: runs have stopped following
   * their agents by then, so closing the connection (which ends their followers) ends no run.
   */
  async onApplicationShutdown(): Promise<void> {
    this.closing = true;
    clearInterval(this.livenessTimer);
    clearInterval(this.hostAddressTimer);
    for (const sandbox of this.sandboxes.values()) clearTimeout(sandbox.lifetimeTimer);
    const warm = this.warm.splice(0);
    const discarded = Promise.all(warm.map((pending) => pending.then((prepared) => this.discard(prepared)).catch(() => undefined)));
    await this.withinShutdownDeadline(discarded, 'discarding prepared sandboxes');
    const unmounted = Promise.all([...this.mountedVolumes].map((dir) => this.disks.unmount(dir).catch((error: Error) => this.logger.warn(`could not unmount volume ${dir}: ${error.message}`))));
    await this.withinShutdownDeadline(unmounted, 'unmounting volumes');
    await this.withinShutdownDeadline(this.spawner.close(), 'closing the spawner');
    await this.egressProxy.closeAll();
  }

  /** A stop of the service never hangs on the kernel (a process in uninterruptible sleep): it says so and goes on. */
  private async withinShutdownDeadline(work: Promise<unknown>, what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), SHUTDOWN_STEP_MS)));
    const outcome = await Promise.race([work.then(() => 'done' as const), deadline]);
    clearTimeout(timer);
    if (outcome === 'late') this.logger.warn(`${what} took more than ${SHUTDOWN_STEP_MS} ms; going on without waiting`);
  }

  async ensureApp(accountId: string): Promise<void> {
    await mkdir(this.dataPath('apps', `app-${safeName(accountId, 'app', 'account id')}`), { recursive: true });
  }

  /**
   * A volume is an ext4 filesystem of the disk limit's size (an image file under
   * DATA_DIR/volume-images), mounted on its directory, whose root is the sandbox's root (host uid
   * ids.base). A volume directory from before images (not empty, no image) stays a plain directory.
   */
  async ensureVolume(accountId: string, volumeName: string): Promise<void> {
    const dir = this.volumeDir(accountId, volumeName);
    const image = this.volumeImage(accountId, volumeName);
    await this.volumeLocks.run(dir, async () => {
      if (this.mountedVolumes.has(dir)) return;
      await mkdir(dir, { recursive: true });
      const hasImage = existsSync(image);
      if (!hasImage && (await readdir(dir)).length > 0) {
        this.logger.warn(`volume ${dir} predates disk limits: it stays a plain directory without a size limit`);
        return this.ownByTheSandboxRoot(dir);
      }
      this.requireTools();
      if (!hasImage) {
        await mkdir(dirname(image), { recursive: true });
        await this.disks.createVolumeImage(image);
      }
      await this.disks.mountVolume(image, dir);
      this.mountedVolumes.add(dir);
    });
  }

  private volumeImage(accountId: string, volumeName: string): string {
    return this.dataPath('volume-images', safeName(accountId, 'volume', 'account id'), `${safeName(volumeName, 'volume', 'volume name')}.ext4`);
  }

  private async volumeSource(accountId: string, volumeName: string): Promise<VolumeSource> {
    const dir = this.volumeDir(accountId, volumeName);
    const device = this.mountedVolumes.has(dir) ? await mountSource(dir) : undefined;
    return device?.startsWith('/dev/loop') ? { kind: 'loop', device, image: this.volumeImage(accountId, volumeName) } : { kind: 'directory', path: dir };
  }

  private async ownByTheSandboxRoot(dir: string): Promise<void> {
    if ((await stat(dir)).uid === this.ids.base) return;
    await chown(dir, this.ids.base, this.ids.base);
    await chmod(dir, 0o755);
  }

  private get disks(): SandboxDisks {
    const tools = this.located.tools as HostTools;
    this.disksOnce ??= new SandboxDisks(tools, megabytes(this.config.sandbox.diskLimitMb), this.ids);
    return this.disksOnce;
  }

  /** The NAT's address of the host's loopback, where the gateway listens; the egress filter opens its port to every sandbox. */
  modelGatewayUrl(): string | null {
    return this.gateway.port === null ? null : `http://${HOST_ADDRESS_IN_SANDBOX}:${this.gateway.port}`;
  }

  /**
   * Gives the sandbox's NAT the egress filter of its policy, before anything runs inside; for an
   * allowlist with domains, first opens the sandbox's own port of the egress proxy, which its
   * processes are told to use.
   */
  private async applyNetworkPolicy(sandbox: LocalSandbox, spec: SandboxSpec): Promise<void> {
    const { mode, allowedDomains } = spec.network;
    const proxyPort = mode === 'allowlist' && allowedDomains.length > 0 ? await this.egressProxy.open(sandbox.id, { allowedDomains }) : undefined;
    if (proxyPort !== undefined) {
      sandbox.networkEnv = proxyEnvironment(`http://${HOST_ADDRESS_IN_SANDBOX}:${proxyPort}`);
      sandbox.env = { ...sandbox.networkEnv, ...sandbox.env };
    }
    const hostAddresses = ownHostAddresses();
    const { rules, defaultVerdict } = egressRules(spec.network, {
      gatewayPort: this.gateway.port,
      proxyPort,
      resolvers: await hostResolvers(),
      hostAddresses,
    });
    await sandbox.network!.applyPolicy(rules, defaultVerdict);
    sandbox.deniedHostAddresses = new Set(hostAddresses);
    this.watchHostAddresses();
  }

  /**
   * A sandbox's filter denies the host's addresses as they were when it started. The host may gain
   * more (an interface, a VPN, a container bridge): checked four times a second, each new one is
   * denied to every running sandbox at once, by one more filter program beside its own.
   */
  private watchHostAddresses(): void {
    this.hostAddressTimer ??= setInterval(() => {
      this.denyingNewAddresses ??= this.denyNewHostAddresses().finally(() => (this.denyingNewAddresses = undefined));
    }, HOST_ADDRESS_POLL_MS).unref();
  }

  private async denyNewHostAddresses(): Promise<void> {
    const current = ownHostAddresses();
    await Promise.all([...this.sandboxes.values()].filter((sandbox) => sandbox.state.status === 'running').map((sandbox) => this.denyHostAddresses(sandbox, current)));
  }

  /** Denies to the sandbox those of `addresses` its filters do not deny yet. */
  private async denyHostAddresses(sandbox: LocalSandbox, addresses: string[]): Promise<void> {
    const denied = (sandbox.deniedHostAddresses ??= new Set());
    // Addresses in the fixed blocked ranges (loopback above all) are already denied by the sandbox's own
    // filter, except the ports it opens on purpose (the model gateway's): a second program must not close those.
    const added = addresses.filter((address) => !denied.has(address) && !inFixedBlockedRange(address));
    const filterDir = sandbox.natCgroups.v2Dir;
    if (added.length === 0 || !filterDir) return;
    const { rules, defaultVerdict } = hostAddressDenial(added);
    try {
      await attachEgressFilter(this.spawner, this.helper!.egressFilter, filterDir, rules, defaultVerdict);
      for (const address of added) denied.add(address);
      this.logger.log(`sandbox ${sandbox.id}: denied ${added.length} host addresses the host gained since it started`);
    } catch (error) {
      // A sandbox that can reach the host is worse than one stopped: it ends.
      this.logger.error(`sandbox ${sandbox.id}: could not deny new host addresses (${(error as Error).message}); stopping it`);
      await this.stop(sandbox, { status: 'error', exitReason: 'egress_filter_failed' });
    }
  }

  volume(accountId: string, volumeName: string): VolumeAccess {
    return new LocalVolumeAccess(this.volumeDir(accountId, volumeName), { uid: this.ids.base, gid: this.ids.base });
  }

  async create(spec: SandboxSpec): Promise<SandboxHandle> {
    this.requireTools();
    validateSpec(spec);
    const steps = parseDockerfileCommands(spec.dockerfileCommands);
    const image = await this.resolveImage(spec.imageBase, spec.onProgress);
    try {
      return await this.createOn(spec, steps, image);
    } finally {
      if (image.digest) this.registryImagesOnce?.release(image.digest);
    }
  }

  private async createOn(spec: SandboxSpec, steps: DockerfileStep[], image: ResolvedImage): Promise<SandboxHandle> {
    const cacheKey = steps.some((step) => step.kind === 'run') ? imageCacheKey(spec.accountId, await this.baseIdentity(image), steps) : undefined;
    const cachedLayers = cacheKey ? await this.imageCache.find(cacheKey) : null;
    await this.ensureVolume(spec.accountId, spec.volumeName);

    const isPlainHostView = image.rootDir === undefined && cachedLayers === null;
    reportProgress(spec.onProgress, { phase: 'starting' });
    const prepared = isPlainHostView ? await this.takeWarm() : await this.prepare(image.rootDir, cachedLayers);
    const { id, dirs, cgroups, natCgroups, network, launcher, spare } = prepared;
    const sandbox: LocalSandbox = { id, dirs, cgroups, natCgroups, network, launcher, spare, initPid: 0, networkEnv: {}, state: { status: 'running' }, ...sandboxDefaults(spec, imageDefaultsOf(steps, image.config)) };
    try {
      // Side by side: until create() returns or runs an image step, only the engine's init runs inside.
      const [initPid] = await Promise.all([
        launcher.start({ volume: await this.volumeSource(spec.accountId, spec.volumeName), volumeMountPath: spec.volumeMountPath }),
        this.applyNetworkPolicy(sandbox, spec),
      ]);
      sandbox.initPid = initPid;
      this.sandboxes.set(id, sandbox);
      launcher.process.once('exit', (code, signal) => void this.endedOnItsOwn(sandbox, exitCodeOf(code, signal)));
      const expiresAt = Date.now() + spec.timeoutSeconds * 1000;
      this.armLifetime(sandbox, expiresAt);
      // From here the sandbox outlives this service: the supervisor keeps it until its lifetime.
      launcher.process.keep({ key: `sandbox ${id}`, deadline: expiresAt, exitFile: dirs.exitFile });
      network.keep({ key: `NAT of ${id}`, deadline: expiresAt, exitFile: dirs.natExitFile });
      const persisted: PersistedState = { initPid, expiresAt, accountId: spec.accountId, bootId: await bootId(), proxyPort: this.egressProxy.portOf(id), imageConfig: image.config, imageDigest: image.digest };
      await writeFile(dirs.stateFile, JSON.stringify(persisted));
      this.watchLiveness();

      await this.applyImageSteps(sandbox, steps, cachedLayers !== null, image.config, spec.onProgress);
      // The writable layer is mounted only in the launcher's mount namespace: read it through there.
      const throughLauncher = (dir: string) => `/proc/${launcher.process.pid}/root${dir}`;
      if (cacheKey && cachedLayers === null) await this.imageCache.store(cacheKey, prepared.overlays.map((overlay) => throughLauncher(overlay.upperDir)));
    } catch (error) {
      await this.stop(sandbox, { status: 'error', exitReason: 'start_failed' });
      throw error;
    } finally {
      if (isPlainHostView) this.warmUp();
    }
    this.logger.log(`sandbox ${id} created for sandbox ${spec.sandboxId} of account ${spec.accountId} (image ${image.name}${image.digest ? ` ${image.digest}` : ''}, network ${spec.network.mode})`);
    return { providerSandboxId: id, limits: this.enforcedLimits(spec, cgroups) };
  }

  async exec(providerSandboxId: string, request: ExecRequest): Promise<SandboxProcess> {
    const sandbox = this.sandboxes.get(providerSandboxId);
    if (!sandbox || sandbox.state.status !== 'running') throw new SandboxGoneError(providerSandboxId);
    if (request.argv.length === 0) throw new ProviderInvalidError('exec', 'argv must not be empty');
    const env = { ...sandbox.env, ...request.env, ...request.secretEnv };
    const workdir = request.workdir ?? sandbox.workdir;
    if (!posix.isAbsolute(workdir)) throw new ProviderInvalidError('exec', `workdir must be an absolute path: ${workdir}`);
    return this.startProcess(sandbox, request.argv, env, workdir, request.timeoutSeconds);
  }

  /** Also for a sandbox another instance on this host runs (they share the supervisor): it runs while its init does. */
  async status(providerSandboxId: string): Promise<SandboxState> {
    const known = this.sandboxes.get(providerSandboxId);
    if (known) return known.state;
    const persisted = SANDBOX_ID.test(providerSandboxId) ? await readPersistedState(new SandboxDirs(this.sandboxDir(providerSandboxId)).stateFile) : null;
    if (persisted && (await isSandboxInit(persisted.initPid, providerSandboxId))) return { status: 'running' };
    return { status: 'terminated', exitReason: 'unknown_to_this_service' };
  }

  async terminate(providerSandboxId: string): Promise<void> {
    const sandbox = this.sandboxes.get(providerSandboxId);
    if (sandbox) await this.stop(sandbox, { status: 'terminated', exitReason: 'terminated' });
    else await this.removeLeftovers(providerSandboxId);
  }

  /**
   * After a restart of the service: takes over a sandbox that still runs (its processes never
   * stopped), or says how it ended meanwhile, from what the supervisor recorded: its lifetime
   * (timeout), the memory limit (oom), a kill, its init's exit code, or a reboot of the machine.
   */
  async reattach(providerSandboxId: string, spec: SandboxSpec): Promise<SandboxState> {
    const known = this.sandboxes.get(providerSandboxId);
    if (known) return known.state;
    const dirs = new SandboxDirs(this.sandboxDir(providerSandboxId));
    const persisted = await readPersistedState(dirs.stateFile);
    if (!persisted || !(await isSandboxInit(persisted.initPid, providerSandboxId))) {
      const ended = (await this.takeTombstone(providerSandboxId)) ?? (await this.howItEnded(providerSandboxId, dirs, persisted));
      await this.removeLeftovers(providerSandboxId);
      this.logger.log(`sandbox ${providerSandboxId} ended while the service was away: ${'exitReason' in ended ? ended.exitReason : ''}`);
      return ended;
    }
    await this.ensureVolume(spec.accountId, spec.volumeName);
    const sandbox: LocalSandbox = {
      id: providerSandboxId,
      dirs,
      cgroups: await SandboxCgroups.locate(providerSandboxId, await this.cgroupHost()),
      natCgroups: await SandboxCgroups.locate(natCgroupName(providerSandboxId), await this.cgroupHost()),
      networkEnv: {},
      initPid: persisted.initPid,
      state: { status: 'running' },
      ...sandboxDefaults(spec, imageDefaultsOf(parseDockerfileCommands(spec.dockerfileCommands), persisted.imageConfig)),
    };
    await this.reopenEgressProxy(sandbox, spec, persisted.proxyPort);
    // The host may have gained addresses while no service watched: they are denied to it before it is used again.
    await this.denyHostAddresses(sandbox, ownHostAddresses());
    this.watchHostAddresses();
    this.sandboxes.set(providerSandboxId, sandbox);
    this.armLifetime(sandbox, persisted.expiresAt);
    this.watchLiveness();
    this.logger.log(`sandbox ${providerSandboxId} reattached`);
    return sandbox.state;
  }

  /** The sandbox's own egress proxy port, which its filter and its processes' environment name, is served again. */
  private async reopenEgressProxy(sandbox: LocalSandbox, spec: SandboxSpec, port: number | undefined): Promise<void> {
    if (port === undefined) return;
    try {
      await this.egressProxy.open(sandbox.id, { allowedDomains: spec.network.allowedDomains }, port);
      sandbox.networkEnv = proxyEnvironment(`http://${HOST_ADDRESS_IN_SANDBOX}:${port}`);
      sandbox.env = { ...sandbox.networkEnv, ...sandbox.env };
    } catch (error) {
      this.logger.error(`sandbox ${sandbox.id}: its egress proxy port ${port} could not be opened again (${(error as Error).message}): its allowed domains are unreachable`);
    }
  }

  private async howItEnded(providerSandboxId: string, dirs: SandboxDirs, persisted: PersistedState | null): Promise<SandboxState> {
    if (!persisted) return { status: 'terminated', exitReason: 'never_started' };
    if (persisted.bootId !== (await bootId())) return { status: 'terminated', exitReason: 'service_restarted' };
    const exit = await readJson<KeptExit>(dirs.exitFile);
    if (exit?.reason === 'deadline' || (!exit && Date.now() >= persisted.expiresAt)) return { status: 'terminated', exitReason: 'timeout', exitCode: TIMEOUT_EXIT_CODE };
    if (await (await SandboxCgroups.locate(providerSandboxId, await this.cgroupHost())).oomKilled()) return { status: 'terminated', exitReason: 'oom', exitCode: 137 };
    if (!exit) return { status: 'terminated', exitReason: 'killed' };
    if (exit.signal) return { status: 'terminated', exitReason: 'killed', exitCode: exitCodeOf(null, exit.signal) };
    return exitedState(exit.code ?? 0);
  }

  /**
   * The sandboxes of an account whose processes run here; those without a row are orphans (the
   * service stopped between starting one and recording it).
   */
  override async runningSandboxIds(accountId: string): Promise<string[]> {
    const ids = (await readdir(this.dataPath('sandboxes')).catch(() => [] as string[])).filter((name) => SANDBOX_ID.test(name));
    const running: string[] = [];
    for (const id of ids) {
      const persisted = await readPersistedState(new SandboxDirs(this.sandboxDir(id)).stateFile);
      if (persisted?.accountId === accountId && (await isSandboxInit(persisted.initPid, id))) running.push(id);
    }
    return running;
  }

  /** The launcher's exit tells when a sandbox started by this service ends; the others are checked now and then. */
  private watchLiveness(): void {
    this.livenessTimer ??= setInterval(() => void this.checkLiveness(), LIVENESS_POLL_MS).unref();
  }

  private async checkLiveness(): Promise<void> {
    for (const sandbox of this.sandboxes.values()) {
      if (sandbox.state.status !== 'running' || sandbox.stopping || this.closing) continue;
      if (await isSandboxInit(sandbox.initPid, sandbox.id)) continue;
      const persisted = await readPersistedState(sandbox.dirs.stateFile);
      await this.stop(sandbox, await this.howItEnded(sandbox.id, sandbox.dirs, persisted));
    }
  }

  /** Its init exited (the launcher with it): killed from outside, or out of memory; never a stop of ours. */
  private async endedOnItsOwn(sandbox: LocalSandbox, exitCode: number): Promise<void> {
    if (sandbox.stopping || this.closing) return;
    const oom = await sandbox.cgroups.oomKilled();
    await this.stop(sandbox, oom ? { status: 'terminated', exitReason: 'oom', exitCode } : exitedState(exitCode));
  }

  private readinessProblem(): string | undefined {
    const { missing } = locateHostTools(this.config.sandbox.bwrapBin);
    if (missing.some((entry) => entry.tool === 'bwrap')) {
      return `bubblewrap is not installed (no ${this.config.sandbox.bwrapBin} executable found): run \`apt-get install bubblewrap\``;
    }
    if (missing.length > 0) {
      return `missing host tools ${missing.map((entry) => entry.tool).join(', ')}: run \`apt-get install ${[...new Set(missing.map((entry) => entry.pkg))].join(' ')}\``;
    }
    if (process.getuid?.() !== 0) return 'the local sandbox engine must run as root (it mounts overlays and manages cgroups)';
    if (!this.helper || !locateSandboxHelper()) return 'the sandbox helper is not built: run `npm run build` (it needs `apt-get install gcc libseccomp-dev`)';
    if (!hasCgroupV2()) return 'no cgroup v2 hierarchy is mounted (at /sys/fs/cgroup or /sys/fs/cgroup/unified): each sandbox\'s egress filter attaches there';
    if (this.accountInRange) return `SANDBOX_UID_BASE/SANDBOX_UID_COUNT (${this.ids.base}+${this.ids.count}) overlap the host account ${this.accountInRange}: choose a range no host user or group uses`;
    for (const [name, path] of [['DATA_DIR', this.config.dataDir], ['IMAGES_DIR', this.config.sandbox.imagesDir]]) {
      if (!isMountSafePath(path)) return `${name} must not contain whitespace, commas, colons or backslashes (it is used in overlay mounts): ${path}`;
    }
    if (/^\/run(\/|$)/.test(realpathOrSelf(this.config.dataDir))) return `DATA_DIR must not lie inside /run, where sandbox launchers stage their mounts: ${this.config.dataDir}`;
    const shownDir = hostDirContaining(this.config.dataDir);
    if (shownDir) return `DATA_DIR must not lie inside ${shownDir}, which sandboxes see as a lower layer (overlayfs refuses overlapping layers): ${this.config.dataDir}`;
    try {
      accessSync(this.config.sandbox.claudeBin, constants.X_OK);
    } catch {
      return `the Claude Code CLI is not an executable at ${this.config.sandbox.claudeBin} (set CLAUDE_BIN)`;
    }
    return undefined;
  }

  private requireTools(): HostTools {
    const problem = this.readinessProblem();
    if (problem) throw new ProviderUnavailableError('sandbox', problem);
    return this.located.tools as HostTools;
  }

  private dataPath(...segments: string[]): string {
    return join(this.config.dataDir, ...segments);
  }

  private sandboxDir(providerSandboxId: string): string {
    if (!SANDBOX_ID.test(providerSandboxId)) throw new ProviderInvalidError('sandbox', `not a local sandbox id: ${providerSandboxId}`);
    return this.dataPath('sandboxes', providerSandboxId);
  }

  private volumeDir(accountId: string, volumeName: string): string {
    return this.dataPath('volumes', safeName(accountId, 'volume', 'account id'), safeName(volumeName, 'volume', 'volume name'));
  }

  /** The host view; a directory of that name under IMAGES_DIR; otherwise a registry reference, pulled unless cached. */
  private async resolveImage(imageBase: string | undefined, onProgress?: SandboxSpec['onProgress']): Promise<ResolvedImage> {
    if (imageBase === undefined || imageBase === 'host') return { name: 'host' };
    const rootDir = join(this.config.sandbox.imagesDir, imageBase);
    const isImportedRoot = SAFE_NAME.test(imageBase) && (await stat(rootDir).catch(() => null))?.isDirectory();
    if (isImportedRoot) return { name: imageBase, rootDir };
    const pulled = await this.registryImages().get(imageBase, onProgress);
    return { name: imageBase, rootDir: pulled.rootDir, digest: pulled.digest, config: pulled.config };
  }

  override async listImages(): Promise<CachedImage[]> {
    return (await this.registryImagesIfUsable()?.list()) ?? [];
  }

  override async removeImage(digest: string): Promise<void> {
    const store = this.registryImagesIfUsable();
    if (!store) throw new ImageNotCachedError(digest);
    await store.remove(digest);
  }

  /** Whether a sandbox of this host (of this service run or an earlier one) still runs on the image. */
  private async isImageInUse(digest: string): Promise<boolean> {
    const ids = (await readdir(this.dataPath('sandboxes')).catch(() => [] as string[])).filter((name) => SANDBOX_ID.test(name));
    for (const id of ids) {
      const persisted = await readPersistedState(new SandboxDirs(this.sandboxDir(id)).stateFile);
      if (persisted?.imageDigest === digest && (await isSandboxInit(persisted.initPid, id))) return true;
    }
    return false;
  }

  private registryImagesIfUsable(): RegistryImageStore | undefined {
    try {
      return this.registryImages();
    } catch {
      return undefined;
    }
  }

  /** Registry images need skopeo and umoci, looked up on first use: hosts without them still run host-view sandboxes. */
  private registryImages(): RegistryImageStore {
    if (this.registryImagesOnce) return this.registryImagesOnce;
    const skopeo = findExecutable('skopeo');
    const umoci = findExecutable('umoci');
    if (!skopeo || !umoci) throw new ProviderUnavailableError('image', 'registry images need skopeo and umoci on the host: run `apt-get install skopeo umoci`');
    const dir = this.dataPath('registry-images');
    const { pullPolicy, authFile, insecure, cacheMaxBytes } = this.config.sandbox.registry;
    const tools = new RegistryTools({ skopeo, umoci }, registryToolFiles(dir));
    this.registryImagesOnce = new RegistryImageStore(dir, tools, { pullPolicy, authFile, insecureRegistries: insecure, platform: hostPlatform(), maxBytes: cacheMaxBytes, inUse: (digest) => this.isImageInUse(digest) }, (message) => this.logger.log(message));
    return this.registryImagesOnce;
  }

  /** The prepared plain host-view sandbox, or a new one when none is ready. */
  private async takeWarm(): Promise<PreparedSandbox> {
    const pending = this.warm.shift(); // before awaiting, so that concurrent creates never share it
    const warm = await pending?.catch(() => undefined);
    if (warm && !warm.launcher.exited) return warm;
    if (warm) await this.discard(warm);
    return this.prepare(undefined, null);
  }

  /**
   * Keeps WARM_SANDBOXES plain host-view sandboxes prepared (mounts, launcher, first exec process):
   * more than one, so that a create right after another does not wait for the one being prepared
   * while the previous sandbox's teardown holds the CPU.
   */
  private warmUp(): void {
    while (this.warm.length < WARM_SANDBOXES && !this.closing) {
      const warm = this.prepare(undefined, null);
      this.warm.push(warm);
      warm.catch((error: Error) => {
        this.logger.warn(`could not prepare a sandbox ahead of time: ${error.message}`);
        const index = this.warm.indexOf(warm);
        if (index >= 0) this.warm.splice(index, 1);
      });
    }
  }

  /** Mounts a root in a new launcher that then waits for its sandbox's parameters. */
  private async prepare(imageRoot: string | undefined, cachedLayers: string | null): Promise<PreparedSandbox> {
    const tools = this.requireTools();
    this.abandonedSwept ??= this.sweepLeftovers();
    await this.abandonedSwept;
    const id = `sbx-${randomBytes(6).toString('hex')}`;
    const dirs = new SandboxDirs(this.sandboxDir(id));
    const { overlays, idmappedLayers } = this.shiftedOverlays(dirs, ...(await this.rootLayers(imageRoot, cachedLayers)));
    let launcher: SandboxLauncher | undefined;
    try {
      await prepareSandboxDirs(overlays, idmappedLayers, this.ids);
      const makeWritableLayer = await this.disks.createLayerImage(dirs.writableImage, dirs.writable);
      await writeFile(dirs.fstab, this.disks.layerFstabLine(dirs.writableImage, dirs.writable) + sandboxFstab(overlays));
      const cgroupHost = await this.cgroupHost();
      const cgroups = await SandboxCgroups.create(
        id,
        {
          maxProcesses: this.config.sandbox.maxProcesses,
          memoryBytes: this.config.sandbox.memoryLimitMb * 1024 * 1024,
          cpuCores: this.config.sandbox.cpuLimit,
        },
        cgroupHost,
      );
      const natCgroups = await SandboxCgroups.create(natCgroupName(id), NAT_LIMITS, cgroupHost);
      const argv = launchArgv({ tools, helper: this.helper!, ids: this.ids, procsFiles: cgroups.procsFiles, idmappedLayers, makeWritableLayer, fstab: dirs.fstab });
      launcher = await SandboxLauncher.spawn(this.spawner, argv, this.ids);
      const network = await SandboxNetworkStack.prepare({
        spawner: this.spawner,
        sh: tools.sh,
        slirp4netns: tools.slirp4netns,
        egressFilter: this.helper!.egressFilter,
        cgroups: natCgroups,
        netnsPid: launcher.process.pid,
      });
      return { id, dirs, overlays, cgroups, natCgroups, network, launcher, spare: this.spawnProcess(cgroups) };
    } catch (error) {
      launcher?.kill();
      await this.removeLeftovers(id);
      throw error;
    }
  }

  private async discard(prepared: PreparedSandbox): Promise<void> {
    const launcherExited = prepared.launcher.killAndWait();
    void killSpare(prepared.spare);
    await Promise.all([prepared.cgroups.destroy(), prepared.natCgroups.destroy()]);
    await launcherExited;
    await rm(prepared.dirs.base, { recursive: true, force: true });
  }

  /**
   * Before the service serves: what an earlier instance left of sandboxes that no longer run is
   * removed (directories, and the cgroups of those directories; cgroups without one belong to
   * another instance on this host). Sandboxes still running stay for reattach().
   */
  async onModuleInit(): Promise<void> {
    if (this.readinessProblem()) return;
    this.abandonedSwept ??= this.sweepLeftovers();
    await this.abandonedSwept;
  }

  /**
   * What sandboxes that ended while no service ran left behind is removed, except how each one
   * ended (a tombstone beside the directories, for reattach() to report; kept a week at most).
   */
  private async sweepLeftovers(): Promise<void> {
    const names = await readdir(this.dataPath('sandboxes')).catch(() => [] as string[]);
    let removed = 0;
    for (const id of names.filter((name) => SANDBOX_ID.test(name))) {
      const dirs = new SandboxDirs(this.sandboxDir(id));
      const persisted = await readPersistedState(dirs.stateFile);
      if (persisted && (await isSandboxInit(persisted.initPid, id))) continue;
      if (persisted) await writeFile(this.tombstone(id), JSON.stringify(await this.howItEnded(id, dirs, persisted)));
      await this.removeLeftovers(id);
      removed++;
    }
    for (const name of names.filter((entry) => entry.endsWith(TOMBSTONE_SUFFIX))) {
      const file = this.dataPath('sandboxes', name);
      if (Date.now() - (await stat(file)).mtimeMs > TOMBSTONE_KEEP_MS) await rm(file, { force: true });
    }
    if (removed > 0) this.logger.log(`removed what ${removed} sandboxes of an earlier run left behind`);
  }

  private tombstone(providerSandboxId: string): string {
    return `${this.sandboxDir(providerSandboxId)}${TOMBSTONE_SUFFIX}`;
  }

  private async takeTombstone(providerSandboxId: string): Promise<SandboxState | null> {
    const ended = await readJson<SandboxState>(this.tombstone(providerSandboxId));
    await rm(this.tombstone(providerSandboxId), { force: true });
    return ended;
  }

  /**
   * The overlays with every host-owned lower layer replaced by an idmapped mount of it, so that
   * host root's files look owned by the sandbox's root (apt-get works) while nothing the sandbox
   * writes is ever owned by a host uid outside its range. Cached step results were written by a
   * sandbox, are already in its range, and stay as they are.
   */
  private shiftedOverlays(dirs: SandboxDirs, rootLowerDirs: string[], subLayers: Array<{ name: string; lowerDirs: string[] }>) {
    const cacheDir = `${this.dataPath('image-cache')}/`;
    const idmapped = new Map<string, string>();
    const shift = (dir: string) => {
      if (dir.startsWith(cacheDir)) return dir;
      if (!idmapped.has(dir)) idmapped.set(dir, dirs.idmapped(idmapped.size));
      return idmapped.get(dir)!;
    };
    const overlays = dirs.overlays(rootLowerDirs.map(shift), subLayers.map((layer) => ({ name: layer.name, lowerDirs: layer.lowerDirs.map(shift) })));
    const idmappedLayers = [...idmapped].map(([source, target]) => ({ source, target }));
    return { overlays, idmappedLayers };
  }

  /** Lower layers of the root overlay and of each shown host directory, the cached step results on top. */
  private async rootLayers(imageRoot: string | undefined, cachedLayers: string | null): Promise<[string[], Array<{ name: string; lowerDirs: string[] }>]> {
    const cached = (layer: string) => (cachedLayers && existsSync(join(cachedLayers, layer)) ? [join(cachedLayers, layer)] : []);
    const base = await this.getSandboxBase();
    if (imageRoot) return [[...cached(ROOT_LAYER), ...(await this.claudeLayers([imageRoot])), base.additionsDir, imageRoot], []];
    return [
      [...cached(ROOT_LAYER), base.additionsDir, base.skeletonDir],
      base.layers.map((layer) => ({ name: layer.name, lowerDirs: [...cached(layer.name), ...layer.lowerDirs] })),
    ];
  }

  /** The layers that make the Claude CLI run in the image (its libc's build, or a loader for a libc-less one). */
  private async claudeLayers(imageLayers: string[]): Promise<string[]> {
    const { claudeBinMusl } = this.config.sandbox;
    const claude = await prepareImageClaude(imageLayers, { baseDir: this.dataPath('rootfs'), claudeBinMusl });
    if (claude.problem) this.logger.warn(`Claude runs will fail in this ${claude.libc} image: ${claude.problem}`);
    return claude.lowerDirs;
  }

  /** A registry image by digest (a re-pushed tag is another base), an IMAGES_DIR root by name; the host view by the content hash its base directory is named after. */
  private async baseIdentity(image: ResolvedImage): Promise<string> {
    if (image.digest) return `registry:${image.digest}`;
    if (image.rootDir) return `image:${image.name}`;
    return `host:${basename(dirname((await this.getSandboxBase()).skeletonDir))}`;
  }

  private getSandboxBase(): Promise<SandboxBase> {
    const { imagesDir, secretsFile, claudeBin } = this.config.sandbox;
    const hidden = [imagesDir, ...(secretsFile ? [secretsFile] : [])];
    this.sandboxBase ??= prepareSandboxBase(this.dataPath('rootfs'), hidden, claudeBin, this.located.tools as HostTools).catch((error: unknown) => {
      this.sandboxBase = undefined;
      throw error;
    });
    return this.sandboxBase;
  }

  /** Runs the Dockerfile lines in the fresh sandbox; with cached layers only ENV and WORKDIR are applied. */
  private async applyImageSteps(sandbox: LocalSandbox, steps: DockerfileStep[], cached: boolean, image: ImageConfig | undefined, onProgress?: SandboxSpec['onProgress']): Promise<void> {
    const current = initialImageDefaults(image);
    Object.assign(current.env, sandbox.networkEnv);
    // Only the steps that run something count (RUN, WORKDIR's mkdir); none does with cached layers.
    const total = cached ? 0 : steps.filter((step) => step.kind === 'run' || step.kind === 'workdir').length;
    let built = 0;
    for (const step of steps) {
      applyConfigStep(current, step);
      const argv = cached ? undefined : step.kind === 'run' ? ['/bin/sh', '-c', step.command] : step.kind === 'workdir' ? ['mkdir', '-p', '--', current.workdir] : undefined;
      if (!argv) continue;
      reportProgress(onProgress, { phase: 'building', step: ++built, steps: total, detail: step.instruction });
      const process = await this.startProcess(sandbox, argv, current.env, step.kind === 'run' ? current.workdir : '/');
      const { exitCode, outputTail } = await runCapturingTail(process, STEP_OUTPUT_TAIL_BYTES);
      if (exitCode !== 0) throw new ImageStepFailedError(step.index, step.instruction, exitCode, outputTail);
    }
  }

  /** Runs argv through the sandbox's spare process (spawned ahead, already in its cgroups) or a new one. */
  private async startProcess(sandbox: LocalSandbox, argv: string[], env: Record<string, string>, workdir: string, timeoutSeconds?: number): Promise<LocalSandboxProcess> {
    const script = execStdinScript(env, workdir, argv);
    const spare = sandbox.spare;
    sandbox.spare = undefined; // before awaiting, so that concurrent execs never share it
    const ready = await spare?.catch(() => undefined);
    const process = ready && !ready.exited ? ready : await this.spawnProcess(sandbox.cgroups);
    if (sandbox.state.status !== 'running') {
      await process.kill();
      throw new SandboxGoneError(sandbox.id);
    }
    setTimeout(() => this.provideSpare(sandbox), SPARE_DELAY_MS).unref();
    return process.begin(sandbox.initPid, script, timeoutSeconds);
  }

  /**
   * Keeps one exec process of the sandbox spawned and in its cgroups: joining cgroups after a quiet
   * moment costs the kernel an RCU grace period (milliseconds), better spent before a request comes.
   */
  private provideSpare(sandbox: LocalSandbox): void {
    if (sandbox.spare || sandbox.state.status !== 'running' || this.closing) return;
    sandbox.spare = this.spawnProcess(sandbox.cgroups);
  }

  private spawnProcess(cgroups: SandboxCgroups): Promise<LocalSandboxProcess> {
    const tools = this.located.tools as HostTools;
    const spawned = LocalSandboxProcess.spawn(this.spawner, tools.sh, execHostScript(this.helper!, cgroups.procsFiles));
    spawned.catch(() => undefined); // a spare that failed is replaced when taken
    return spawned;
  }

  private armLifetime(sandbox: LocalSandbox, expiresAt: number): void {
    const timeout: SandboxState = { status: 'terminated', exitReason: 'timeout', exitCode: TIMEOUT_EXIT_CODE };
    sandbox.lifetimeTimer = setTimeout(() => void this.stop(sandbox, timeout), Math.max(0, expiresAt - Date.now()));
    sandbox.lifetimeTimer.unref();
  }

  /** Ends the sandbox once: records why, kills every process, removes its cgroups and directories. */
  private stop(sandbox: LocalSandbox, final: SandboxState): Promise<void> {
    sandbox.stopping ??= (async () => {
      sandbox.state = final;
      const spareKilled = sandbox.spare ? killSpare(sandbox.spare) : undefined;
      sandbox.spare = undefined;
      clearTimeout(sandbox.lifetimeTimer);
      const launcherExited = sandbox.launcher?.killAndWait();
      if (!sandbox.launcher && sandbox.initPid > 0) killQuietly(sandbox.initPid);
      await Promise.all([sandbox.cgroups.destroy(), sandbox.natCgroups.destroy()]);
      await this.egressProxy.close(sandbox.id);
      await Promise.all([launcherExited, spareKilled]);
      await this.removeSandboxDir(sandbox);
      this.logger.log(`sandbox ${sandbox.id} ${final.status}: ${'exitReason' in final ? final.exitReason : ''}`);
    })();
    return sandbox.stopping;
  }

  /**
   * Retried: a process of the sandbox that is still exiting may add a file while the tree is being
   * removed (ENOTEMPTY). The sandbox has stopped either way, so a directory that stays is only
   * logged, never a failed stop (a DELETE answered 500 for it).
   */
  private async removeSandboxDir(sandbox: LocalSandbox): Promise<void> {
    await rm(sandbox.dirs.base, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 }).catch((error: unknown) =>
      this.logger.warn(`could not remove the directory of sandbox ${sandbox.id} (left for the next start): ${(error as Error).message}`),
    );
  }

  private async removeLeftovers(providerSandboxId: string): Promise<void> {
    const dir = this.sandboxDir(providerSandboxId);
    await (await SandboxCgroups.locate(providerSandboxId, await this.cgroupHost())).destroy();
    await (await SandboxCgroups.locate(natCgroupName(providerSandboxId), await this.cgroupHost())).destroy();
    await rm(dir, { recursive: true, force: true });
  }

  /** Sandboxes' cgroups nest below the supervisor's (outside the service's unit): where it is, read once it runs. */
  private cgroupHost(): Promise<CgroupHostOptions> {
    this.cgroupHostOnce ??= this.spawner
      .supervisorPid()
      .then(async (pid) => ({ procSelfCgroup: await readFile(`/proc/${pid}/cgroup`, 'utf8') }))
      .catch((error: unknown) => {
        this.cgroupHostOnce = undefined;
        throw error;
      });
    return this.cgroupHostOnce;
  }

  private enforcedLimits(spec: SandboxSpec, cgroups: SandboxCgroups): EnforcedLimits {
    return { lifetime_seconds: spec.timeoutSeconds, ...cgroups.enforced, disk_bytes: this.disks.limitBytes, exec_output_bytes: this.config.sandbox.execOutputLimitBytes };
  }
}

function safeName(value: string, step: 'app' | 'volume', what: string): string {
  if (typeof value !== 'string' || !SAFE_NAME.test(value)) throw new ProviderInvalidError(step, `invalid ${what}: ${String(value)}`);
  return value;
}

/** The shown host directory (e.g. /var) that contains path, under its own or its resolved name. */
function hostDirContaining(path: string): string | undefined {
  const names = [path, realpathOrSelf(path)];
  return HOST_SYSTEM_ENTRIES.map((entry) => `/${entry}`).find((dir) => names.some((name) => name.startsWith(`${dir}/`)));
}

function realpathOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function validateSpec(spec: SandboxSpec): void {
  const mountPath = spec.volumeMountPath;
  if (!posix.isAbsolute(mountPath) || posix.normalize(mountPath) !== mountPath || mountPath === '/' || /^\/(proc|dev)(\/|$)/.test(mountPath) || /[\n\r\0]/.test(mountPath)) {
    throw new ProviderInvalidError('volume', `volume mount path must be a normalized absolute path outside /, /proc and /dev: ${mountPath}`);
  }
  if (!posix.isAbsolute(spec.workdir)) throw new ProviderInvalidError('sandbox', `workdir must be an absolute path: ${spec.workdir}`);
  if (!Number.isInteger(spec.timeoutSeconds) || spec.timeoutSeconds <= 0) throw new ProviderInvalidError('sandbox', 'timeoutSeconds must be a positive integer');
  const invalid = Object.keys({ ...spec.env, ...secretValues(spec) }).find((name) => !isValidEnvName(name));
  if (invalid !== undefined) throw new ProviderInvalidError('sandbox', `invalid environment variable name: ${invalid}`);
}

async function prepareSandboxDirs(overlays: OverlayMount[], idmappedLayers: Array<{ source: string; target: string }>, ids: IdRange): Promise<void> {
  await Promise.all(idmappedLayers.map((layer) => mkdir(layer.target, { recursive: true })));
  await Promise.all(overlays.flatMap((overlay) => [mkdir(overlay.upperDir, { recursive: true }), mkdir(overlay.workDir, { recursive: true })]));
  const sourceOf = new Map(idmappedLayers.map((layer) => [layer.target, layer.source]));
  for (const overlay of overlays) await matchUpperToLowest(overlay, sourceOf, ids);
}

/**
 * A merged directory shows its upper directory's owner and mode: the upper of each overlay gets
 * those of its lowest layer as the sandbox sees it (host owner shifted into the sandbox's range).
 */
async function matchUpperToLowest(overlay: OverlayMount, sourceOf: Map<string, string>, ids: IdRange): Promise<void> {
  const lowest = overlay.lowerDirs[overlay.lowerDirs.length - 1];
  const source = sourceOf.get(lowest);
  const stats = await stat(source ?? lowest);
  const shift = source === undefined ? 0 : ids.base;
  await chown(overlay.upperDir, stats.uid + shift, stats.gid + shift);
  await chmod(overlay.upperDir, stats.mode & 0o7777);
}

/** The host account (user or group) whose id falls in the sandboxes' range, if any. */
function hostAccountInRange(ids: IdRange): string | undefined {
  for (const file of ['/etc/passwd', '/etc/group']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const [name, , id] = line.split(':');
      const value = Number(id);
      if (id !== undefined && id !== '' && value >= ids.base && value < ids.base + ids.count) return `${name} (${file}, id ${value})`;
    }
  }
  return undefined;
}

function inFixedBlockedRange(address: string): boolean {
  const family = address.includes(':') ? 'ipv6' : 'ipv4';
  return blockedRangeContaining(parseCidr(`${address}/${family === 'ipv4' ? 32 : 128}`)) !== undefined;
}

function readPersistedState(file: string): Promise<PersistedState | null> {
  return readJson<PersistedState>(file);
}

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/** Changes on every boot of the machine. */
function bootId(): Promise<string> {
  return readFile('/proc/sys/kernel/random/boot_id', 'utf8').then((text) => text.trim());
}

/** Whether pid still names the init of this sandbox (a reused pid lives in other cgroups). */
async function isSandboxInit(pid: number, providerSandboxId: string): Promise<boolean> {
  const cgroups = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
  return cgroups.includes(`/modal-sandboxes/${providerSandboxId}\n`);
}

async function killSpare(spare: Promise<LocalSandboxProcess>): Promise<void> {
  await (await spare.catch(() => undefined))?.kill();
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
