import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ImagePullRefusedError } from '../sandbox-provider.errors';
import { canonicalReference, type ImageReference, isInsecureRegistry, parseImageReference, pinnedReference } from './image-reference';
import { type ImageConfig, readImageConfig } from './oci-image-config';
import { type CachedImage, type CreateProgress, reportProgress } from '../sandbox-provider';
import { type InUse, RegistryImageCache, treeSize } from './registry-image-cache';
import type { Platform, RegistryAccess, RegistryTools } from './registry-tools';

export type ImagePullPolicy = 'if-not-present' | 'always' | 'never';

export interface RegistryImageOptions {
  pullPolicy: ImagePullPolicy;
  authFile?: string;
  /** host:port of registries that may be spoken to without verified TLS (loopback ones always may). */
  insecureRegistries: readonly string[];
  platform: Platform;
  /** IMAGE_CACHE_MAX_GB in bytes: after a pull, least-recently-used unused entries are pruned down to it. */
  maxBytes?: number;
  /** Whether a sandbox runs on an image (besides those leased by get() and not yet released). */
  inUse?: InUse;
}

/** A pulled image: its root filesystem, read-only lower layer of its sandboxes, and its configuration. */
export interface RegistryImage {
  reference: string;
  digest: string;
  rootDir: string;
  config: ImageConfig;
}

interface StoredImage {
  reference: string;
  digest: string;
  platform: Platform;
  config: ImageConfig;
  pulledAt: string;
  sizeBytes?: number;
}

/** Part of every entry's directory name: entries unpacked by an older layout are never reused. */
const STORE_FORMAT = 1;
/** A partial pull this old was left by a process that died: no pull runs that long (each tool call is bounded). */
const STALE_PULL_MS = 24 * 3600 * 1000;

/**
 * Registry images unpacked under `dir`, content-addressed by manifest digest:
 *
 *     images/v1-sha256-<hex>/rootfs       the image's files, owned as in the image (host uid 0 = its root,
 *                                         shifted into a sandbox's range by an idmapped mount like an IMAGES_DIR root)
 *     images/v1-sha256-<hex>/image.json   reference, digest, platform, ENV/WORKDIR/USER
 *     tags/<sha256 of the reference>.json which digest a tag named when last pulled
 *     tmp/pull-*                          pulls in progress, renamed into images/ when complete
 *
 * An entry appears by one rename, complete or not at all: two processes pulling the same image
 * each unpack their own copy and the second rename loses harmlessly. Within a process concurrent
 * requests for one reference or one digest share one pull.
 */
export class RegistryImageStore {
  private readonly flights = new Map<string, Promise<RegistryImage>>();
  private prepared?: Promise<void>;
  private readonly housekeeping: RegistryImageCache;
  /** Images handed out by get() whose sandbox is not yet recorded as running on them. */
  private readonly leases = new Map<string, number>();
  /** get() calls under way, and the removal or prune that waits for them to end (and holds new ones back). */
  private active = 0;
  private readonly idleWaiters: Array<() => void> = [];
  private exclusiveRun?: Promise<void>;

  constructor(
    private readonly dir: string,
    private readonly tools: RegistryTools,
    private readonly options: RegistryImageOptions,
    private readonly log: (message: string) => void,
  ) {
    this.housekeeping = new RegistryImageCache(dir);
  }

  /**
   * The image `text` names, pulled first unless the pull policy and the cache allow otherwise. The
   * image is leased (never pruned nor removed) until release(digest) is called. onProgress is told
   * when this call's pull copies and unpacks (a call joining another's pull of the image is not).
   */
  async get(text: string, onProgress?: (progress: CreateProgress) => void): Promise<RegistryImage> {
    const reference = parseImageReference(text);
    while (this.exclusiveRun) await this.exclusiveRun;
    this.active++;
    let image: RegistryImage;
    try {
      image = await this.once(`reference ${canonicalReference(reference)}`, () => this.resolve(reference, onProgress));
      this.leases.set(image.digest, (this.leases.get(image.digest) ?? 0) + 1);
      await this.housekeeping.touch(image.digest);
    } finally {
      if (--this.active === 0) this.idleWaiters.splice(0).forEach((wake) => wake());
    }
    if (this.pulledSincePrune && this.options.maxBytes !== undefined) await this.prune().catch((error: unknown) => this.log(`pruning the image cache failed: ${String(error)}`));
    return image;
  }

  /** Ends the lease get() took, once the sandbox on the image is recorded (or failed to start). */
  release(digest: string): void {
    const count = (this.leases.get(digest) ?? 0) - 1;
    if (count > 0) this.leases.set(digest, count);
    else this.leases.delete(digest);
  }

  /** The cached images, most recently used first; inUse as the store's owner says plus current leases. */
  async list(): Promise<CachedImage[]> {
    const images = await this.housekeeping.list();
    return Promise.all(images.map(async (image) => ({ ...image, inUse: await this.isInUse(image.digest) })));
  }

  /** Removes one image, never one in use or being pulled. */
  remove(digest: string): Promise<void> {
    return this.exclusive(() => this.housekeeping.remove(digest, (candidate) => this.isInUse(candidate)));
  }

  private pulledSincePrune = false;

  private prune(): Promise<void> {
    return this.exclusive(async () => {
      if (!this.pulledSincePrune) return;
      this.pulledSincePrune = false;
      const removed = await this.housekeeping.prune(this.options.maxBytes!, (digest) => this.isInUse(digest));
      if (removed.length > 0) this.log(`image cache over IMAGE_CACHE_MAX_GB: removed ${removed.join(', ')}`);
    });
  }

  private async isInUse(digest: string): Promise<boolean> {
    return (this.leases.get(digest) ?? 0) > 0 || (await (this.options.inUse?.(digest) ?? false));
  }

  /** Runs task while no get() runs (no pull), holding new ones back; one such task at a time. */
  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const previous = this.exclusiveRun ?? Promise.resolve();
    const run = previous.then(async () => {
      if (this.active > 0) await new Promise<void>((wake) => this.idleWaiters.push(wake));
      return task();
    });
    const tracked: Promise<void> = run.then(
      () => undefined,
      () => undefined,
    ).then(() => {
      if (this.exclusiveRun === tracked) this.exclusiveRun = undefined;
    });
    this.exclusiveRun = tracked;
    return run;
  }

  private async resolve(reference: ImageReference, onProgress?: (progress: CreateProgress) => void): Promise<RegistryImage> {
    await this.prepare();
    const { pullPolicy } = this.options;
    const known = reference.digest ?? (pullPolicy === 'always' ? undefined : await this.taggedDigest(reference));
    const cached = known ? await this.cached(known) : undefined;
    if (cached) return cached;
    if (pullPolicy === 'never') throw new ImagePullRefusedError(reference.text, 'not_cached', 'is not in the local image cache and IMAGE_PULL_POLICY is never');
    const access = this.access(reference);
    const digest = reference.digest ?? (await this.tools.manifestDigest(reference.text, `docker://${canonicalReference(reference)}`, access));
    const image = (await this.cached(digest)) ?? (await this.once(`digest ${digest}`, () => this.pull(reference, digest, access, onProgress)));
    if (!reference.digest) await this.recordTag(reference, digest);
    return image;
  }

  private async pull(reference: ImageReference, digest: string, access: RegistryAccess, onProgress?: (progress: CreateProgress) => void): Promise<RegistryImage> {
    const started = Date.now();
    const staging = await mkdtemp(join(this.dir, 'tmp', 'pull-'));
    try {
      const layout = join(staging, 'layout');
      reportProgress(onProgress, { phase: 'pulling_image', detail: canonicalReference(reference) });
      await this.tools.copy(reference.text, `docker://${pinnedReference(reference, digest)}`, `oci:${layout}:image`, access, this.options.platform);
      const config = await readImageConfig(layout);
      reportProgress(onProgress, { phase: 'unpacking_image', detail: canonicalReference(reference) });
      await this.tools.unpack(reference.text, `${layout}:image`, join(staging, 'bundle'));
      const entry = join(staging, 'entry');
      await mkdir(entry);
      await rename(join(staging, 'bundle', 'rootfs'), join(entry, 'rootfs'));
      const sizeBytes = await treeSize(join(entry, 'rootfs'));
      const stored: StoredImage = { reference: canonicalReference(reference), digest, platform: this.options.platform, config, pulledAt: new Date().toISOString(), sizeBytes };
      await writeFile(join(entry, 'image.json'), JSON.stringify(stored));
      await rename(entry, this.entryDir(digest)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
      });
      this.pulledSincePrune = true;
      this.log(`pulled image ${canonicalReference(reference)} (${digest}) in ${Date.now() - started} ms`);
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
    return (await this.cached(digest))!;
  }

  private async cached(digest: string): Promise<RegistryImage | undefined> {
    const stored = await readJson<StoredImage>(join(this.entryDir(digest), 'image.json'));
    return stored ? { reference: stored.reference, digest, rootDir: join(this.entryDir(digest), 'rootfs'), config: stored.config } : undefined;
  }

  private async taggedDigest(reference: ImageReference): Promise<string | undefined> {
    return (await readJson<{ digest: string }>(this.tagFile(reference)))?.digest;
  }

  private async recordTag(reference: ImageReference, digest: string): Promise<void> {
    const file = this.tagFile(reference);
    const partial = `${file}.${process.pid}.${Date.now()}`;
    await writeFile(partial, JSON.stringify({ reference: canonicalReference(reference), digest }));
    await rename(partial, file);
  }

  private access(reference: ImageReference): RegistryAccess {
    return { tlsVerify: !isInsecureRegistry(reference.registry, this.options.insecureRegistries), authFile: this.options.authFile };
  }

  /** Private to root: images hold setuid programs owned by host root until a sandbox's idmapped mount shifts them. */
  private prepare(): Promise<void> {
    this.prepared ??= (async () => {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await chmod(this.dir, 0o700);
      await Promise.all(['images', 'tags', 'tmp', 'home'].map((name) => mkdir(join(this.dir, name), { recursive: true })));
      await writeFile(join(this.dir, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
      await removeStalePulls(join(this.dir, 'tmp'));
    })().catch((error: unknown) => {
      this.prepared = undefined;
      throw error;
    });
    return this.prepared;
  }

  private once(key: string, task: () => Promise<RegistryImage>): Promise<RegistryImage> {
    let flight = this.flights.get(key);
    if (!flight) {
      flight = task().finally(() => this.flights.delete(key));
      this.flights.set(key, flight);
    }
    return flight;
  }

  private entryDir(digest: string): string {
    return join(this.dir, 'images', `v${STORE_FORMAT}-${digest.replace(':', '-')}`);
  }

  private tagFile(reference: ImageReference): string {
    return join(this.dir, 'tags', `${createHash('sha256').update(canonicalReference(reference)).digest('hex')}.json`);
  }
}

/** The files skopeo is given besides its arguments, inside the store's directory. */
export function registryToolFiles(dir: string): { home: string; policy: string } {
  return { home: join(dir, 'home'), policy: join(dir, 'policy.json') };
}

/** The OCI platform of this host (Node's arch names → Go's). */
export function hostPlatform(arch: string = process.arch): Platform {
  const architecture = ({ x64: 'amd64', ia32: '386', ppc64: 'ppc64le' } as Record<string, string>)[arch] ?? arch;
  return { os: 'linux', architecture };
}

async function removeStalePulls(tmp: string): Promise<void> {
  for (const name of await readdir(tmp)) {
    const path = join(tmp, name);
    const modified = (await stat(path).catch(() => undefined))?.mtimeMs;
    if (modified !== undefined && Date.now() - modified > STALE_PULL_MS) await rm(path, { recursive: true, force: true });
  }
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}
