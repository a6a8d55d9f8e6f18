import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  existsSync,
  fstatSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  type Stats,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { chmod, chown, copyFile, link, lstat, mkdir, readlink, realpath, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { HostTools } from './host-tools';
import { CLAUDE_DIR_IN_SANDBOX } from './sandbox-commands';
import { DNS_FORWARDER_IN_SANDBOX } from './sandbox-network';
import {
  type ComposedEntry,
  ETC_FROM_ADDITIONS,
  HOST_PROGRAM_ENTRIES,
  HOST_VIEW_VERSION,
  type HostBasePlan,
  type HostEntry,
  type HostFile,
  type HostSystem,
  planHostBase,
  shippedEtcPaths,
  VAR_ALLOWLIST,
  VAR_EMPTY_DIRS,
} from './sandbox-rootfs';

const run = promisify(execFile);
/** Host files copied (as the files they lead to) into every root so that name resolution works as on the host. */
const RESOLVER_FILES = ETC_FROM_ADDITIONS.filter((name) => name !== 'resolv.conf').map((name) => `/etc/${name}`);
/** Names are resolved by the NAT's DNS forwarder: the host's own resolver is not reachable from a sandbox. */
const SANDBOX_RESOLV_CONF = `nameserver ${DNS_FORWARDER_IN_SANDBOX}\n`;
const DPKG_INFO = '/var/lib/dpkg/info';
/** Host files scanned or copied between two turns of the event loop (a few milliseconds' work). */
const SLICE = 32;
const DAY_MS = 86_400_000;

/** The shared read-only layers of sandbox roots. */
export interface SandboxBase {
  /** Lowest layer of a host-view root: empty top-level directories and the host's top-level symlinks. */
  skeletonDir: string;
  /**
   * Above every root: the Claude Code CLI, the mount points the launcher needs and the host's
   * resolver files. A lower layer, so a sandbox changing them changes its own copy.
   */
  additionsDir: string;
  /**
   * One overlay per top-level directory of the host view, lower layers highest first: the host's
   * program directories (/usr, /lib…) and the composed /etc, /var and /opt.
   */
  layers: Array<{ name: string; lowerDirs: string[] }>;
}

/**
 * Builds (once per distinct plan) the skeleton, the mask layers hiding `serviceHidden` (service files
 * that may lie in a program directory) and the composed /etc, /var and /opt under
 * `<baseDir>/<plan hash>`, and the additions under `<baseDir>/additions-<hash>`. The plan records the
 * owner, mode, size and mtime of every host file it copies, so a changed host gives a new directory:
 * layers in use are never modified.
 */
export async function prepareSandboxBase(baseDir: string, serviceHidden: string[], claudeBin: string, tools: HostTools): Promise<SandboxBase> {
  const hidden = await existingHidden([...serviceHidden, baseDir, ...serviceInstallation()]);
  const plan = planHostBase(await hostEntries(), hidden, await scanHostSystem());
  const dir = join(baseDir, identityHash({ version: HOST_VIEW_VERSION, plan }));
  await buildOnce(dir, (partial) => buildBase(partial, plan, tools));
  const claude = await realpath(claudeBin).catch(() => claudeBin);
  const sources = await Promise.all([claude, ...RESOLVER_FILES].map(fileIdentity));
  const additionsDir = join(baseDir, `additions-${identityHash({ version: HOST_VIEW_VERSION, sources, resolvConf: SANDBOX_RESOLV_CONF })}`);
  await buildOnce(additionsDir, (partial) => buildAdditions(partial, claude));
  const additionsOver = (name: string) => (ADDITIONS_TOPS.includes(name) ? [join(additionsDir, name)] : []);
  return {
    skeletonDir: join(dir, 'skeleton'),
    additionsDir,
    layers: [
      ...plan.layers.map((layer) => ({
        name: layer.name,
        lowerDirs: [...additionsOver(layer.name), ...(layer.whiteouts.length > 0 ? [join(dir, 'masks', layer.name)] : []), layer.hostDir],
      })),
      ...plan.composed.map(({ name }) => ({ name, lowerDirs: [...additionsOver(name), join(dir, 'system', name)] })),
    ],
  };
}

/** The top-level directories of the additions, which cover those of the layers of the same name. */
const ADDITIONS_TOPS = [CLAUDE_DIR_IN_SANDBOX.split('/')[1], 'etc'];

export function identityHash(identity: unknown): string {
  return createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 16);
}

export async function fileIdentity(path: string): Promise<unknown> {
  const stats = await stat(path).catch(() => null);
  return stats && { path, ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs };
}

/** The service's own installation (code, node_modules): the nearest directory above this module holding a package.json. */
function serviceInstallation(): string[] {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return [dir];
  }
  return [];
}

async function hostEntries(): Promise<HostEntry[]> {
  const entries: HostEntry[] = [];
  for (const name of HOST_PROGRAM_ENTRIES) {
    const stats = await lstat(`/${name}`).catch(() => null);
    if (stats?.isDirectory()) entries.push({ name, kind: 'directory', mode: stats.mode });
    else if (stats?.isSymbolicLink()) entries.push({ name, kind: 'symlink', mode: stats.mode, target: await readlink(`/${name}`) });
  }
  return entries;
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

async function scanHostSystem(): Promise<HostSystem> {
  const passwdStats = await stat('/etc/passwd').catch(() => null);
  return {
    etc: await scanTrees(['/etc']),
    shippedEtc: shippedEtcPaths(await dpkgFileLists()),
    passwd: readTextIfAny('/etc/passwd'),
    group: readTextIfAny('/etc/group'),
    passwordChangeDay: Math.floor((passwdStats?.mtimeMs ?? 0) / DAY_MS),
    var: await scanVar(),
    opt: scanPaths(['/opt']),
  };
}

/** /var itself, the empty directories' host counterparts, and the allowlisted trees with the directories leading to them. */
async function scanVar(): Promise<HostFile[]> {
  const trees = VAR_ALLOWLIST.map((path) => `/var/${path}`);
  const leading = trees.flatMap((tree) => ancestorsBelow('/var', tree));
  const files = [...scanPaths(['/var', ...VAR_EMPTY_DIRS.map(([path]) => `/var/${path}`), ...leading]), ...(await scanTrees(trees))];
  return [...new Map(files.map((file) => [file.path, file])).values()];
}

function ancestorsBelow(root: string, path: string): string[] {
  const ancestors: string[] = [];
  for (let dir = dirname(path); dir.startsWith(`${root}/`); dir = dirname(dir)) ancestors.push(dir);
  return ancestors;
}

function scanPaths(paths: string[]): HostFile[] {
  return paths.flatMap((path) => {
    const stats = lstatIfAny(path);
    return stats ? [hostFile(path, stats)] : [];
  });
}

/** Everything under the roots (themselves included) as lstat sees it; symlinks are not followed. */
async function scanTrees(roots: string[]): Promise<HostFile[]> {
  const files: HostFile[] = [];
  const pending = [...roots];
  while (pending.length > 0) {
    for (const path of pending.splice(0, SLICE)) {
      const stats = lstatIfAny(path);
      if (!stats) continue;
      files.push(hostFile(path, stats));
      if (stats.isDirectory()) pending.push(...readdirIfAny(path).map((name) => join(path, name)));
    }
    await nextTurn();
  }
  return files;
}

function hostFile(path: string, stats: Stats): HostFile {
  const kind = stats.isFile() ? 'file' : stats.isDirectory() ? 'directory' : stats.isSymbolicLink() ? 'symlink' : 'other';
  const file: HostFile = { path, kind, mode: stats.mode, uid: stats.uid, gid: stats.gid, size: stats.size, mtimeMs: stats.mtimeMs };
  if (kind === 'symlink') file.target = readlinkIfAny(path);
  return file;
}

async function dpkgFileLists(): Promise<string[]> {
  const lists = readdirIfAny(DPKG_INFO).filter((name) => name.endsWith('.list') || name.endsWith('.conffiles'));
  return inSlices(lists, (name) => readTextIfAny(join(DPKG_INFO, name)));
}

function lstatIfAny(path: string): Stats | undefined {
  return lstatSync(path, { throwIfNoEntry: false });
}

function readlinkIfAny(path: string): string {
  try {
    return readlinkSync(path);
  } catch {
    return '';
  }
}

function readdirIfAny(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

function readTextIfAny(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/**
 * Runs `work` on every item, synchronously, yielding to the event loop between slices: a thread-pool
 * round trip per system call made composing several times slower, one long loop would stall the service.
 */
async function inSlices<T, R>(items: T[], work: (item: T) => R): Promise<R[]> {
  const results: R[] = [];
  for (let start = 0; start < items.length; start += SLICE) {
    results.push(...items.slice(start, start + SLICE).map(work));
    await nextTurn();
  }
  return results;
}

/** Builds `dir` unless it exists, in a partial directory renamed into place: a concurrent build of the same content wins quietly. */
export async function buildOnce(dir: string, buildInto: (partial: string) => Promise<void>): Promise<void> {
  if (await stat(dir).catch(() => null)) return;
  const partial = `${dir}.partial-${randomBytes(4).toString('hex')}`;
  try {
    await makeDir(partial, 0o755);
    await buildInto(partial);
    await rename(partial, dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
    });
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
}

async function buildBase(partial: string, plan: HostBasePlan, tools: HostTools): Promise<void> {
  await buildSkeleton(join(partial, 'skeleton'), plan);
  await buildMasks(join(partial, 'masks'), plan, tools);
  await buildComposed(join(partial, 'system'), plan);
}

async function buildSkeleton(skeleton: string, plan: HostBasePlan): Promise<void> {
  await makeDir(skeleton, 0o755);
  for (const [path, mode] of plan.skeletonDirs) await makeDir(join(skeleton, path), mode);
  for (const [path, target] of plan.skeletonSymlinks) await symlink(target, join(skeleton, path));
}

async function buildAdditions(additions: string, claudeBin: string): Promise<void> {
  for (const [path, mode] of [['proc', 0o555], ['dev', 0o755], ['tmp', 0o1777]] as const) await makeDir(join(additions, path), mode);
  const names = CLAUDE_DIR_IN_SANDBOX.split('/').filter(Boolean);
  for (let depth = 1; depth <= names.length; depth++) await makeDir(join(additions, ...names.slice(0, depth)), 0o755);
  await placeClaude(claudeBin, join(additions, CLAUDE_DIR_IN_SANDBOX, 'claude'));
  await makeDir(join(additions, 'etc'), 0o755);
  for (const file of RESOLVER_FILES) await copyResolverFile(file, join(additions, file));
  await writeFile(join(additions, 'etc', 'resolv.conf'), SANDBOX_RESOLV_CONF);
  await chmod(join(additions, 'etc', 'resolv.conf'), 0o644); // the service's umask is 077
}

/** Copies what a symlink leads to: systemd-resolved's link into /run would dangle in a sandbox. */
async function copyResolverFile(file: string, target: string): Promise<void> {
  if (!(await copyFile(file, target).then(() => true, () => false))) return;
  await chmod(target, 0o644);
}

/**
 * A hard link costs nothing (the CLI is some 400 MB); overlayfs never writes to a lower layer, so
 * the host's file stays as it is. A copy where DATA_DIR is on another filesystem.
 */
export async function placeClaude(claudeBin: string, target: string): Promise<void> {
  await link(claudeBin, target).catch(() => copyFile(claudeBin, target));
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

/** Creates the composed directories under `system` (`system/etc`…), parents before what they hold. */
async function buildComposed(system: string, plan: HostBasePlan): Promise<void> {
  await makeDir(system, 0o755);
  for (const { entries } of plan.composed) await inSlices(entries, (entry) => createEntry(system, entry));
}

function createEntry(system: string, entry: ComposedEntry): void {
  const path = join(system, entry.path);
  if (entry.kind === 'symlink') {
    symlinkSync(entry.target, path);
    lchownSync(path, entry.uid, entry.gid);
    return;
  }
  if (entry.kind === 'directory') mkdirSync(path);
  else if (entry.kind === 'generated') writeFileSync(path, entry.content, { flag: 'wx', mode: 0o600 });
  else if (!copySharedFile(entry.path, path)) return;
  chownSync(path, entry.uid, entry.gid);
  chmodSync(path, entry.mode); // after chown, which clears set-id bits; not subject to the umask
}

/**
 * Copies a host file (no hard link: its own inode, owned as planned) if it still is a regular file
 * every host user may read: it may have changed since it was planned. Keeps its mtime.
 */
function copySharedFile(source: string, target: string): boolean {
  let fd: number;
  try {
    fd = openSync(source, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile() || (stats.mode & 0o004) === 0) return false;
    writeFileSync(target, readFileSync(fd), { flag: 'wx', mode: 0o600 });
    utimesSync(target, stats.atime, stats.mtime);
    return true;
  } finally {
    closeSync(fd);
  }
}

export async function makeDir(path: string, mode: number): Promise<void> {
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
