import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const CGROUP_ROOT = '/sys/fs/cgroup';
const GROUP_PARENT = 'modal-sandboxes';
const CFS_PERIOD_US = 100_000;
const SETTLE_POLL_MS = 10;

export interface CgroupLimits {
  maxProcesses: number;
  memoryBytes: number;
  cpuCores?: number;
}

export interface EnforcedCgroupLimits {
  max_processes: number | null;
  memory_bytes: number | null;
  cpu_cores: number | null;
}

type Controller = 'pids' | 'memory' | 'cpu';
const CONTROLLERS: Controller[] = ['pids', 'memory', 'cpu'];

/**
 * The cgroup v1 path of this process per controller, from /proc/self/cgroup
 * (`4:memory:/some/path`, `1:cpu,cpuacct:/`); sandboxes nest below it so they stay inside
 * whatever limits the service itself runs under.
 */
export function ownCgroupPaths(procSelfCgroup: string): Partial<Record<Controller, string>> {
  const paths: Partial<Record<Controller, string>> = {};
  for (const line of procSelfCgroup.split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!match) continue;
    for (const controller of match[1].split(',')) {
      if ((CONTROLLERS as string[]).includes(controller)) paths[controller as Controller] = match[2];
    }
  }
  return paths;
}

/** The cgroups (one per v1 controller that is available) holding every process of one sandbox. */
export class SandboxCgroups {
  private constructor(
    private readonly dirs: Partial<Record<Controller, string>>,
    readonly enforced: EnforcedCgroupLimits,
  ) {}

  /** Creates the groups and sets the limits; a controller that cannot be used is left out (limit null). */
  static async create(name: string, limits: CgroupLimits): Promise<SandboxCgroups> {
    const candidates = await groupDirs(name);
    const settings: Record<Controller, Array<[file: string, value: number]> | null> = {
      pids: [['pids.max', limits.maxProcesses]],
      memory: [['memory.limit_in_bytes', limits.memoryBytes]],
      cpu: limits.cpuCores === undefined ? null : [['cpu.cfs_period_us', CFS_PERIOD_US], ['cpu.cfs_quota_us', Math.round(limits.cpuCores * CFS_PERIOD_US)]],
    };
    const dirs: Partial<Record<Controller, string>> = {};
    for (const controller of CONTROLLERS) {
      const dir = candidates[controller];
      const values = settings[controller];
      if (dir === undefined || values === null) continue;
      if (await createGroup(dir, values)) dirs[controller] = dir;
    }
    return new SandboxCgroups(dirs, {
      max_processes: dirs.pids ? limits.maxProcesses : null,
      memory_bytes: dirs.memory ? limits.memoryBytes : null,
      cpu_cores: dirs.cpu ? limits.cpuCores! : null,
    });
  }

  /** The groups a sandbox of this name would have, for clean-up after a restart. */
  static async locate(name: string): Promise<SandboxCgroups> {
    return new SandboxCgroups(await groupDirs(name), { max_processes: null, memory_bytes: null, cpu_cores: null });
  }

  /** `cgroup.procs` files a process writes its pid into to join every group. */
  get procsFiles(): string[] {
    return Object.values(this.dirs).map((dir) => join(dir, 'cgroup.procs'));
  }

  /** Host pids of every process in the sandbox's groups. */
  async members(): Promise<number[]> {
    const pids = new Set<number>();
    for (const file of this.procsFiles) {
      const text = await readFile(file, 'utf8').catch(() => '');
      for (const line of text.split('\n')) if (line.trim() !== '') pids.add(Number(line));
    }
    return [...pids];
  }

  /**
   * SIGKILLs every member and removes the groups, again and again until they are gone: processes
   * may still be forking, exiting, or joining.
   */
  async destroy(timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const dir of Object.values(this.dirs)) {
      while (!(await removeGroup(dir)) && Date.now() < deadline) {
        for (const pid of await this.members()) killQuietly(pid);
        await sleep(SETTLE_POLL_MS);
      }
      await rmdir(dirname(dir)).catch(() => undefined); // fails while other sandboxes run
    }
  }
}

async function groupDirs(name: string): Promise<Partial<Record<Controller, string>>> {
  const own = ownCgroupPaths(await readFile('/proc/self/cgroup', 'utf8').catch(() => ''));
  const dirs: Partial<Record<Controller, string>> = {};
  for (const controller of CONTROLLERS) {
    const ownPath = own[controller];
    if (ownPath !== undefined) dirs[controller] = join(CGROUP_ROOT, controller, ownPath, GROUP_PARENT, name);
  }
  return dirs;
}

async function createGroup(dir: string, values: Array<[string, number]>): Promise<boolean> {
  try {
    await mkdir(dir, { recursive: true });
    for (const [file, value] of values) await writeFile(join(dir, file), String(value));
    return true;
  } catch {
    await rmdir(dir).catch(() => undefined);
    return false;
  }
}

/** True once the group is gone. */
async function removeGroup(dir: string): Promise<boolean> {
  try {
    await rmdir(dir);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
