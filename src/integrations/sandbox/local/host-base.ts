import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, chown, copyFile, link, lstat, mkdir, readdir, readlink, realpath, rename, rm, stat, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { HostTools } from './host-tools';
import { CLAUDE_DIR_IN_SANDBOX } from './sandbox-commands';
import { HIDDEN_HOST_PATHS, HOST_SYSTEM_ENTRIES, type HostBasePlan, type HostEntry, planHostBase } from './sandbox-rootfs';

const run = promisify(execFile);
/** Host files copied into every image root so that name resolution works as on the host. */
const RESOLVER_FILES = ['/etc/resolv.conf', '/etc/hosts'];

/** The shared read-only layers of sandbox roots. */
export interface SandboxBase {
  /** Lowest layer of a host-view root: empty top-level directories and the host's top-level symlinks. */
  skeletonDir: string;
  /**
   * Above every root: the Claude Code CLI, the mount points the launcher needs and, for image
   * roots, the host's resolver files. A lower layer, so a sandbox changing them changes its own copy.
   */
  additionsDir: string;
  /** One overlay per shown host directory, lower layers highest first. */
  layers: Array<{ name: string; lowerDirs: string[] }>;
}

/**
 * Builds (once per distinct plan) the skeleton, the additions and the mask layers hiding
 * `HIDDEN_HOST_PATHS` and `serviceHidden` (service files that may lie in a shown directory), under
 * `<baseDir>/<plan hash>`. Layers in use are never modified: a changed host gives a new directory.
 */
export async function prepareSandboxBase(baseDir: string, serviceHidden: string[], claudeBin: string, tools: HostTools): Promise<SandboxBase> {
  const plan = planHostBase(await hostEntries(), await existingHidden([...HIDDEN_HOST_PATHS, ...(await sshHostKeys()), ...serviceHidden]));
  const identity = { plan, sources: await Promise.all([claudeBin, ...RESOLVER_FILES].map(fileIdentity)) };
  const dir = join(baseDir, createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 16));
  if (!(await stat(dir).catch(() => null))) await build(dir, plan, claudeBin, tools);
  const additionsDir = join(dir, 'additions');
  return {
    skeletonDir: join(dir, 'skeleton'),
    additionsDir,
    layers: plan.layers.map((layer) => ({
      name: layer.name,
      lowerDirs: [
        ...(layer.name === ADDITIONS_TOP ? [join(additionsDir, ADDITIONS_TOP)] : []),
        ...(layer.whiteouts.length > 0 ? [join(dir, 'masks', layer.name)] : []),
        layer.hostDir,
      ],
    })),
  };
}

/** The top-level directory of the additions that a host directory (/opt) may cover. */
const ADDITIONS_TOP = CLAUDE_DIR_IN_SANDBOX.split('/')[1];

async function fileIdentity(path: string): Promise<unknown> {
  const stats = await stat(path).catch(() => null);
  return stats && { path, ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs };
}

async function hostEntries(): Promise<HostEntry[]> {
  const entries: HostEntry[] = [];
  for (const name of HOST_SYSTEM_ENTRIES) {
    const stats = await lstat(`/${name}`).catch(() => null);
    if (stats?.isDirectory()) entries.push({ name, kind: 'directory', mode: stats.mode });
    else if (stats?.isSymbolicLink()) entries.push({ name, kind: 'symlink', mode: stats.mode, target: await readlink(`/${name}`) });
  }
  return entries;
}

async function sshHostKeys(): Promise<string[]> {
  const names = await readdir('/etc/ssh').catch(() => [] as string[]);
  return names.filter((name) => /^ssh_host_.*key/.test(name)).map((name) => `/etc/ssh/${name}`);
}

/** The paths that exist, each also under its resolved name when a symlink leads there. */
async function existingHidden(paths: string[]): Promise<string[]> {
  const found = new Set<string>();
  for (const path of paths) {
    if (!(await lstat(path).catch(() => null))) continue;
    found.add(path);
    found.add(await realpath(path).catch(() => path));
  }
  return [...found].sort();
}

async function build(dir: string, plan: HostBasePlan, claudeBin: string, tools: HostTools): Promise<void> {
  const partial = `${dir}.partial-${randomBytes(4).toString('hex')}`;
  try {
    await buildSkeleton(join(partial, 'skeleton'), plan);
    await buildAdditions(join(partial, 'additions'), claudeBin);
    await buildMasks(join(partial, 'masks'), plan, tools);
    await rename(partial, dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
    });
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
}

async function buildSkeleton(skeleton: string, plan: HostBasePlan): Promise<void> {
  for (const [path, mode] of plan.skeletonDirs) await makeDir(join(skeleton, path), mode);
  for (const [path, target] of plan.skeletonSymlinks) await symlink(target, join(skeleton, path));
}

async function buildAdditions(additions: string, claudeBin: string): Promise<void> {
  await makeDir(additions, 0o755);
  for (const [path, mode] of [['proc', 0o555], ['dev', 0o755], ['tmp', 0o1777]] as const) await makeDir(join(additions, path), mode);
  const claude = join(additions, CLAUDE_DIR_IN_SANDBOX, 'claude');
  await mkdir(dirname(claude), { recursive: true });
  // A hard link costs nothing; overlayfs never writes to a lower layer, so the host's file stays as it is.
  await link(claudeBin, claude).catch(() => copyFile(claudeBin, claude));
  await mkdir(join(additions, 'etc'), { recursive: true });
  for (const file of RESOLVER_FILES) await copyFile(file, join(additions, file)).catch(() => undefined);
}

async function buildMasks(masks: string, plan: HostBasePlan, tools: HostTools): Promise<void> {
  const whiteouts: string[] = [];
  for (const layer of plan.layers) {
    for (const hidden of layer.whiteouts) {
      await mirrorParents(join(masks, layer.name), layer.hostDir, dirname(hidden));
      whiteouts.push(join(masks, layer.name, hidden));
    }
  }
  // A 0/0 character device is how overlayfs marks an entry of the layers below as deleted.
  if (whiteouts.length > 0) await run(tools.sh, ['-c', 'for p; do "$0" "$p" c 0 0 || exit 1; done', tools.mknod, ...whiteouts], { env: {} });
}

async function makeDir(path: string, mode: number): Promise<void> {
  await mkdir(path, { recursive: true });
  await chmod(path, mode); // not subject to the umask
}

/** Creates `relativeDir` under `maskRoot` with the owner and mode of its host counterpart, which the merged view shows. */
async function mirrorParents(maskRoot: string, hostDir: string, relativeDir: string): Promise<void> {
  const segments = relativeDir === '.' ? [] : relativeDir.split('/');
  for (let depth = 0; depth <= segments.length; depth++) {
    const relative = segments.slice(0, depth).join('/');
    const host = await stat(join(hostDir, relative));
    const mask = join(maskRoot, relative);
    await mkdir(mask, { recursive: true });
    await chown(mask, host.uid, host.gid);
    await chmod(mask, host.mode & 0o7777);
  }
}
