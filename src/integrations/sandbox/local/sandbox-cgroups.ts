import { constants } from 'node:fs';
import { access, mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const DEFAULT_ROOT = '/sys/fs/cgroup';
const GROUP_PARENT = 'modal-sandboxes';
/** The sandboxes' supervisor's own group, beside the service's: its sandboxes nest below it. */
const SUPERVISOR_GROUP = 'modal-sandbox-supervisor';
const CPU_PERIOD_US = 100_000;
const SETTLE_POLL_MS = 10;
const MAKE_GROUP_ATTEMPTS = 3;
/** One path segment: a name can never reach a parent or another sandbox's group. */
const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export interface CgroupLimits {
  maxProcesses: number;
  memoryBytes: number;
  /** May be fractional. */
  cpuCores: number;
}

export interface EnforcedCgroupLimits {
  max_processes: number | null;
  memory_bytes: number | null;
  cpu_cores: number | null;
}

/** Where the cgroup filesystems are and where this process sits in them; the defaults describe this host. */
export interface CgroupHostOptions {
  /** Default /sys/fs/cgroup. */
  root?: string;
  /** The text of /proc/self/cgroup, read when not given. */
  procSelfCgroup?: string;
}

type Controller = 'pids' | 'memory' | 'cpu';
const CONTROLLERS: Controller[] = ['pids', 'memory', 'cpu'];
/** The hierarchies a sandbox joins: one v1 hierarchy per limiting controller, v1 name=systemd, and v2. */
type HierarchyName = Controller | 'systemd' | 'v2';

/** A cgroup directory of the sandbox and the controllers whose limits are set in it. */
interface Group {
  dir: string;
  version: 1 | 2;
  controllers: Controller[];
  /** Groups above it (outermost first) whose `cgroup.subtree_control` must enable those controllers. */
  delegatingDirs: string[];
}

type Hierarchy = Omit<Group, 'dir'> & { parentDir: string };

interface Setting {
  file: string;
  value: string | number;
  /** Set where the kernel offers it; the controller counts as enforced without it. */
  optional?: boolean;
}

/**
 * The path of this process in each hierarchy, from /proc/self/cgroup (`4:memory:/some/path`,
 * `1:cpu,cpuacct:/`, `1:name=systemd:/x`, `0::/v2/path`); sandboxes nest below it so they stay
 * inside whatever limits the service itself runs under.
 */
export function ownCgroupPaths(procSelfCgroup: string): Partial<Record<HierarchyName, string>> {
  const paths: Partial<Record<HierarchyName, string>> = {};
  for (const line of procSelfCgroup.split('\n')) {
    const match = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    const [, id, controllers, path] = match;
    if (id === '0' && controllers === '') paths.v2 = path;
    for (const controller of controllers.split(',')) {
      if (controller === 'name=systemd') paths.systemd = path;
      if ((CONTROLLERS as string[]).includes(controller)) paths[controller as Controller] = path;
    }
  }
  return paths;
}

/**
 * The cgroups holding every process of one sandbox: on a v1 (hybrid) host one per limiting
 * controller plus one in the name=systemd and the unified v2 hierarchy, on a v2-only host a single
 * v2 group. The sandbox's first process joins all of them before it unshares its cgroup namespace,
 * so that namespace is rooted at the sandbox's own group in every hierarchy.
 */
export class SandboxCgroups {
  private constructor(
    private readonly groups: Group[],
    readonly enforced: EnforcedCgroupLimits,
  ) {}

  /** Creates the groups and sets the limits; a limit that cannot be set is reported as null. */
  static async create(name: string, limits: CgroupLimits, options: CgroupHostOptions = {}): Promise<SandboxCgroups> {
    const groups: Group[] = [];
    const enforced = new Set<Controller>();
    for (const group of await sandboxGroups(name, options)) {
      if (!(await makeGroup(group))) continue;
      groups.push(group);
      for (const controller of group.controllers) {
        if (await applySettings(group.dir, limitSettings(group.version, controller, limits))) enforced.add(controller);
      }
    }
    return new SandboxCgroups(groups, {
      max_processes: enforced.has('pids') ? limits.maxProcesses : null,
      memory_bytes: enforced.has('memory') ? limits.memoryBytes : null,
      cpu_cores: enforced.has('cpu') ? limits.cpuCores : null,
    });
  }

  /** The groups a sandbox of this name would have, for clean-up after a restart. */
  static async locate(name: string, options: CgroupHostOptions = {}): Promise<SandboxCgroups> {
    return new SandboxCgroups(await sandboxGroups(name, options), { max_processes: null, memory_bytes: null, cpu_cores: null });
  }

  /**
   * Names of every sandbox group under this service's sandbox parents (in every hierarchy), live or
   * left over by an earlier run: the caller destroys those no live sandbox owns.
   */
  static async leftoverNames(options: CgroupHostOptions = {}): Promise<string[]> {
    const names = new Set<string>();
    for (const hierarchy of await sandboxHierarchies(options)) {
      for (const dir of await childGroupDirs(hierarchy.parentDir)) names.add(dir.slice(hierarchy.parentDir.length + 1));
    }
    return [...names].sort();
  }

  /** `cgroup.procs` files a process writes its pid into to join every group. */
  get procsFiles(): string[] {
    return this.groups.map((group) => join(group.dir, 'cgroup.procs'));
  }

  /** The group in the v2 hierarchy (unified, or the only one), where eBPF programs attach. */
  get v2Dir(): string | undefined {
    return this.groups.find((group) => group.version === 2)?.dir;
  }

  /** Host pids of every process in the sandbox's groups, including groups the sandbox made inside them. */
  async members(): Promise<number[]> {
    const pids = new Set<number>();
    for (const group of this.groups) {
      for (const dir of await groupTree(group.dir)) for (const pid of await readPids(join(dir, 'cgroup.procs'))) pids.add(pid);
    }
    return [...pids];
  }

  /** Whether the kernel's OOM killer has killed a process of the sandbox (v1 memory.oom_control, v2 memory.events). */
  async oomKilled(): Promise<boolean> {
    for (const group of this.groups.filter((candidate) => candidate.controllers.includes('memory'))) {
      const file = join(group.dir, group.version === 1 ? 'memory.oom_control' : 'memory.events');
      const count = /^oom_kill (\d+)$/m.exec(await readFile(file, 'utf8').catch(() => ''));
      if (count && Number(count[1]) > 0) return true;
    }
    return false;
  }

  /**
   * Kills every process (at once through `cgroup.kill` where v2 offers it) and removes the groups,
   * SIGKILLing members again and again until they are gone: processes may still be forking,
   * exiting, or joining.
   */
  async destroy(timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    await Promise.all(this.groups.filter((group) => group.version === 2).map((group) => killGroup(group.dir)));
    for (const group of this.groups) {
      while (!(await removeGroupTree(group.dir)) && Date.now() < deadline) {
        for (const pid of await this.members()) killQuietly(pid);
        await sleep(SETTLE_POLL_MS);
      }
      await rmdir(dirname(group.dir)).catch(() => undefined); // fails while other sandboxes run
    }
  }
}

/**
 * Makes the groups of the sandboxes' supervisor and returns their `cgroup.procs` files. They lie
 * beside this process's own group in each hierarchy (at the root where this process is at the
 * root; at the root on a v2-only host, below which v2 allows no process beside child groups), as
 * a systemd scope would: stopping the service's unit, which kills every process of its cgroup,
 * does not reach the supervisor or the sandboxes below it.
 */
export async function supervisorCgroupProcsFiles(options: CgroupHostOptions = {}): Promise<string[]> {
  const root = options.root ?? DEFAULT_ROOT;
  const dirs: string[] = [];
  if (await exists(join(root, 'cgroup.controllers'))) dirs.push(join(root, SUPERVISOR_GROUP));
  else {
    const own = ownCgroupPaths(options.procSelfCgroup ?? (await readFile('/proc/self/cgroup', 'utf8').catch(() => '')));
    for (const { mount, ownPath } of await usableHybridHierarchies(root, own)) {
      dirs.push(join(mount, ownPath === '/' ? '/' : dirname(ownPath), SUPERVISOR_GROUP));
    }
  }
  const made: string[] = [];
  for (const dir of dirs) {
    try {
      await mkdirIfMissing(dir);
      made.push(join(dir, 'cgroup.procs'));
    } catch {
      // a hierarchy this process may not write: the supervisor stays where it is there
    }
  }
  return made;
}

async function sandboxGroups(name: string, options: CgroupHostOptions): Promise<Group[]> {
  if (!GROUP_NAME.test(name)) throw new Error(`invalid sandbox cgroup name: ${JSON.stringify(name)}`);
  return (await sandboxHierarchies(options)).map(({ parentDir, ...hierarchy }) => ({ ...hierarchy, dir: join(parentDir, name) }));
}

async function sandboxHierarchies(options: CgroupHostOptions): Promise<Hierarchy[]> {
  const root = options.root ?? DEFAULT_ROOT;
  if (await exists(join(root, 'cgroup.controllers'))) return [v2OnlyHierarchy(root)];
  const own = ownCgroupPaths(options.procSelfCgroup ?? (await readFile('/proc/self/cgroup', 'utf8').catch(() => '')));
  return hybridHierarchies(root, own);
}

/**
 * v2 enables a controller for a group's children only while the group holds no processes itself
 * ("no internal processes"), and this service's own group holds at least this process. The root
 * group is exempt, so the sandboxes' parent sits right below it rather than below the service's
 * group. Where the root is a container's cgroup namespace root that holds processes, enabling
 * fails and the limits are reported as not enforced.
 */
function v2OnlyHierarchy(root: string): Hierarchy {
  const parentDir = join(root, GROUP_PARENT);
  return { parentDir, version: 2, controllers: CONTROLLERS, delegatingDirs: [root, parentDir] };
}

/** The v1 controllers, v1 name=systemd and the unified v2 hierarchy, each where mounted and where this process sits in it. */
async function hybridHierarchies(root: string, own: Partial<Record<HierarchyName, string>>): Promise<Hierarchy[]> {
  return (await usableHybridHierarchies(root, own)).map(({ mount, ownPath, version, controllers }) => ({
    parentDir: join(mount, ownPath, GROUP_PARENT),
    version,
    controllers,
    delegatingDirs: [],
  }));
}

/** The hierarchies mounted on a hybrid host in which this process has a place (its path there). */
async function usableHybridHierarchies(root: string, own: Partial<Record<HierarchyName, string>>) {
  const candidates = [
    ...CONTROLLERS.map((controller) => ({ mount: join(root, controller), ownPath: own[controller], version: 1 as const, controllers: [controller], marker: 'cgroup.procs' })),
    { mount: join(root, 'systemd'), ownPath: own.systemd, version: 1 as const, controllers: [] as Controller[], marker: 'cgroup.procs' },
    { mount: join(root, 'unified'), ownPath: own.v2, version: 2 as const, controllers: [] as Controller[], marker: 'cgroup.controllers' },
  ];
  const usable: Array<{ mount: string; ownPath: string; version: 1 | 2; controllers: Controller[] }> = [];
  for (const { mount, ownPath, version, controllers, marker } of candidates) {
    if (ownPath === undefined || !(await exists(join(mount, marker)))) continue;
    usable.push({ mount, ownPath, version, controllers });
  }
  return usable;
}

function limitSettings(version: 1 | 2, controller: Controller, limits: CgroupLimits): Setting[] {
  const quota = Math.round(limits.cpuCores * CPU_PERIOD_US);
  const settings: Record<1 | 2, Record<Controller, Setting[]>> = {
    1: {
      pids: [{ file: 'pids.max', value: limits.maxProcesses }],
      memory: [{ file: 'memory.limit_in_bytes', value: limits.memoryBytes }],
      cpu: [
        { file: 'cpu.cfs_period_us', value: CPU_PERIOD_US },
        { file: 'cpu.cfs_quota_us', value: quota },
      ],
    },
    2: {
      pids: [{ file: 'pids.max', value: limits.maxProcesses }],
      memory: [
        { file: 'memory.max', value: limits.memoryBytes },
        { file: 'memory.swap.max', value: 0, optional: true },
      ],
      cpu: [{ file: 'cpu.max', value: `${quota} ${CPU_PERIOD_US}` }],
    },
  };
  return settings[version][controller];
}

/**
 * Makes the group (its parent if needed, never the hierarchy's own path); false when the hierarchy
 * cannot be used. Retried when the parent vanishes under it: the destroy of the last other sandbox
 * (of this or another service on this host) may remove it between the two mkdirs.
 */
async function makeGroup(group: Group): Promise<boolean> {
  for (let attempt = 1; attempt <= MAKE_GROUP_ATTEMPTS; attempt++) {
    try {
      await makeGroupOnce(group);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return false;
    }
  }
  return false;
}

async function makeGroupOnce(group: Group): Promise<void> {
  for (const dir of group.delegatingDirs) {
    await mkdirIfMissing(dir);
    await enableControllers(dir, group.controllers);
  }
  await mkdirIfMissing(dirname(group.dir));
  await mkdirIfMissing(group.dir);
}

/** One by one, so that a controller the kernel refuses does not keep the others off. */
async function enableControllers(dir: string, controllers: Controller[]): Promise<void> {
  for (const controller of controllers) await writeCgroupFile(join(dir, 'cgroup.subtree_control'), `+${controller}`).catch(() => undefined);
}

async function applySettings(dir: string, settings: Setting[]): Promise<boolean> {
  try {
    for (const { file, value, optional } of settings) {
      await writeCgroupFile(join(dir, file), value).catch((error: unknown) => {
        if (!optional) throw error;
      });
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes to a file the kernel made: it is never created (a missing file means the controller is
 * off, and on a tmpfs /sys/fs/cgroup a created file would limit nothing), and appending lets
 * several `+controller` writes to a plain file (in tests) keep each other.
 */
async function writeCgroupFile(file: string, value: string | number): Promise<void> {
  await writeFile(file, String(value), { flag: constants.O_WRONLY | constants.O_APPEND });
}

async function mkdirIfMissing(dir: string): Promise<void> {
  await mkdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
}

/** Writing 1 to `cgroup.kill` (v2, kernel 5.14+) SIGKILLs the whole subtree, racing no fork. */
async function killGroup(dir: string): Promise<void> {
  await writeCgroupFile(join(dir, 'cgroup.kill'), 1).catch(() => undefined);
}

/** True once the group, and any group the sandbox made inside it, is gone. */
async function removeGroupTree(dir: string): Promise<boolean> {
  for (const child of await childGroupDirs(dir)) await removeGroupTree(child);
  try {
    await rmdir(dir);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

async function groupTree(dir: string): Promise<string[]> {
  const descendants = await Promise.all((await childGroupDirs(dir)).map(groupTree));
  return [dir, ...descendants.flat()];
}

async function childGroupDirs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isDirectory()).map((entry) => join(dir, entry.name));
}

/** Only positive pids: kill(0) or kill(-n) would reach whole process groups. */
async function readPids(procsFile: string): Promise<number[]> {
  const text = await readFile(procsFile, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => /^\d+$/.test(line.trim()))
    .map(Number)
    .filter((pid) => pid > 0);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
