import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CgroupHostOptions, ownCgroupPaths, SandboxCgroups } from './sandbox-cgroups';

const LIMITS = { maxProcesses: 64, memoryBytes: 512 * 1024 * 1024, cpuCores: 0.5 };
const HYBRID_PROC_SELF_CGROUP = ['9:name=systemd:/', '8:pids:/', '4:memory:/process_api/abc', '2:cpuacct:/', '1:cpu:/', '0::/', ''].join('\n');

describe('ownCgroupPaths', () => {
  it('reads the path of each limiting controller, also from combined hierarchies, and of name=systemd and v2', () => {
    const procSelfCgroup = ['12:pids:/', '11:cpu,cpuacct:/system.slice/app.service', '4:memory:/process_api/abc', '3:freezer:/f', '1:name=systemd:/x', '0::/y', ''].join('\n');

    expect(ownCgroupPaths(procSelfCgroup)).toEqual({ pids: '/', cpu: '/system.slice/app.service', memory: '/process_api/abc', systemd: '/x', v2: '/y' });
  });

  it('finds only the v2 path on a cgroup v2 only host', () => {
    expect(ownCgroupPaths('0::/user.slice\n')).toEqual({ v2: '/user.slice' });
  });
});

describe('SandboxCgroups', () => {
  let root: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'sandbox-cgroups-'));
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  /** Stands in for the kernel, which fills every new cgroup directory with its interface files. */
  async function kernelFiles(dir: string, files: string[]): Promise<void> {
    await mkdir(join(root, dir), { recursive: true });
    for (const file of files) await writeFile(join(root, dir, file), '');
  }

  const read = (path: string) => readFile(join(root, path), 'utf8');

  describe('on a cgroup v1 hybrid host', () => {
    let host: CgroupHostOptions;

    beforeEach(async () => {
      host = { root, procSelfCgroup: HYBRID_PROC_SELF_CGROUP };
      for (const mount of ['pids', 'memory', 'cpu', 'cpuacct', 'systemd']) await kernelFiles(mount, ['cgroup.procs']);
      await kernelFiles('memory/process_api/abc', ['cgroup.procs']);
      await kernelFiles('unified', ['cgroup.procs', 'cgroup.controllers']);
    });

    async function kernelGroupFiles(name: string, options: { cpu: boolean }): Promise<void> {
      await kernelFiles(`pids/modal-sandboxes/${name}`, ['cgroup.procs', 'pids.max']);
      await kernelFiles(`memory/process_api/abc/modal-sandboxes/${name}`, ['cgroup.procs', 'memory.limit_in_bytes']);
      await kernelFiles(`cpu/modal-sandboxes/${name}`, ['cgroup.procs', ...(options.cpu ? ['cpu.cfs_period_us', 'cpu.cfs_quota_us'] : [])]);
    }

    it('limits the sandbox in one group per controller below the service own path and joins systemd and unified groups too', async () => {
      await kernelGroupFiles('sbx-1', { cpu: true });

      const cgroups = await SandboxCgroups.create('sbx-1', LIMITS, host);

      expect(await read('pids/modal-sandboxes/sbx-1/pids.max')).toBe('64');
      expect(await read('memory/process_api/abc/modal-sandboxes/sbx-1/memory.limit_in_bytes')).toBe(String(512 * 1024 * 1024));
      expect(await read('cpu/modal-sandboxes/sbx-1/cpu.cfs_period_us')).toBe('100000');
      expect(await read('cpu/modal-sandboxes/sbx-1/cpu.cfs_quota_us')).toBe('50000');
      expect(cgroups.enforced).toEqual({ max_processes: 64, memory_bytes: 512 * 1024 * 1024, cpu_cores: 0.5 });
      expect(cgroups.procsFiles).toEqual([
        join(root, 'pids/modal-sandboxes/sbx-1/cgroup.procs'),
        join(root, 'memory/process_api/abc/modal-sandboxes/sbx-1/cgroup.procs'),
        join(root, 'cpu/modal-sandboxes/sbx-1/cgroup.procs'),
        join(root, 'systemd/modal-sandboxes/sbx-1/cgroup.procs'),
        join(root, 'unified/modal-sandboxes/sbx-1/cgroup.procs'),
      ]);
      expect(existsSync(join(root, 'systemd/modal-sandboxes/sbx-1'))).toBe(true);
      expect(existsSync(join(root, 'unified/modal-sandboxes/sbx-1'))).toBe(true);
    });

    it('reports a controller whose limit files the kernel does not offer as not enforced, without creating them', async () => {
      await kernelGroupFiles('sbx-1', { cpu: false });

      const cgroups = await SandboxCgroups.create('sbx-1', LIMITS, host);

      expect(cgroups.enforced).toEqual({ max_processes: 64, memory_bytes: 512 * 1024 * 1024, cpu_cores: null });
      expect(existsSync(join(root, 'cpu/modal-sandboxes/sbx-1/cpu.cfs_quota_us'))).toBe(false);
      expect(cgroups.procsFiles).toContain(join(root, 'cpu/modal-sandboxes/sbx-1/cgroup.procs'));
    });

    it('leaves out hierarchies that are not mounted or where the service has no path, creating nothing there', async () => {
      await kernelGroupFiles('sbx-1', { cpu: true });
      await rm(join(root, 'cpu'), { recursive: true });
      await rm(join(root, 'unified'), { recursive: true });

      const cgroups = await SandboxCgroups.create('sbx-1', LIMITS, { root, procSelfCgroup: '8:pids:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n' });

      expect(cgroups.enforced.cpu_cores).toBeNull();
      expect(cgroups.procsFiles).toEqual([join(root, 'pids/modal-sandboxes/sbx-1/cgroup.procs'), join(root, 'memory/process_api/abc/modal-sandboxes/sbx-1/cgroup.procs')]);
      expect(existsSync(join(root, 'cpu'))).toBe(false);
      expect(existsSync(join(root, 'unified'))).toBe(false);
      expect(existsSync(join(root, 'systemd/modal-sandboxes'))).toBe(false);
    });

    it('lists the groups under the sandbox parent of every hierarchy', async () => {
      await mkdir(join(root, 'pids/modal-sandboxes/sbx-a'), { recursive: true });
      await mkdir(join(root, 'memory/process_api/abc/modal-sandboxes/sbx-a'), { recursive: true });
      await mkdir(join(root, 'cpu/modal-sandboxes/sbx-b'), { recursive: true });
      await mkdir(join(root, 'systemd/modal-sandboxes/sbx-c'), { recursive: true });
      await mkdir(join(root, 'unified/modal-sandboxes/sbx-d'), { recursive: true });
      await kernelFiles('unified/modal-sandboxes', ['cgroup.procs']);
      await mkdir(join(root, 'memory/modal-sandboxes/sbx-of-another-path'), { recursive: true });

      expect(await SandboxCgroups.leftoverNames(host)).toEqual(['sbx-a', 'sbx-b', 'sbx-c', 'sbx-d']);
    });

    it('finds no leftovers on a host without sandbox parents', async () => {
      expect(await SandboxCgroups.leftoverNames(host)).toEqual([]);
    });

    it('removes a located sandbox from every hierarchy, with the groups it made inside, and the parents it emptied', async () => {
      for (const dir of ['pids', 'memory/process_api/abc', 'cpu', 'systemd', 'unified']) await mkdir(join(root, dir, 'modal-sandboxes/sbx-a/nested/deeper'), { recursive: true });
      await mkdir(join(root, 'pids/modal-sandboxes/sbx-b'));

      await (await SandboxCgroups.locate('sbx-a', host)).destroy();

      expect(await SandboxCgroups.leftoverNames(host)).toEqual(['sbx-b']);
      for (const dir of ['memory/process_api/abc', 'cpu', 'systemd', 'unified']) expect(existsSync(join(root, dir, 'modal-sandboxes'))).toBe(false);
      expect(existsSync(join(root, 'memory/process_api/abc'))).toBe(true);
    });

    it('SIGKILLs the processes listed in its groups until the groups can be removed', async () => {
      const member = spawn('sleep', ['60']);
      const exited = new Promise<NodeJS.Signals | null>((resolve) => member.once('exit', (_code, signal) => resolve(signal)));
      await kernelGroupFiles('sbx-1', { cpu: true });
      const cgroups = await SandboxCgroups.create('sbx-1', LIMITS, host);
      await writeFile(join(root, 'memory/process_api/abc/modal-sandboxes/sbx-1/cgroup.procs'), `${member.pid}\n`);

      try {
        await cgroups.destroy(200); // the fake groups hold files, so they are never removed

        expect(await exited).toBe('SIGKILL');
      } finally {
        member.kill('SIGKILL');
      }
      expect(existsSync(join(root, 'unified/modal-sandboxes/sbx-1/cgroup.kill'))).toBe(false);
    });

    it('lists members of its groups and of groups inside them, ignoring anything but positive pids', async () => {
      await kernelGroupFiles('sbx-1', { cpu: true });
      const cgroups = await SandboxCgroups.create('sbx-1', LIMITS, host);
      await writeFile(join(root, 'pids/modal-sandboxes/sbx-1/cgroup.procs'), '0\n-1\nabc\n123\n');
      await kernelFiles('cpu/modal-sandboxes/sbx-1/inner', ['cgroup.procs']);
      await writeFile(join(root, 'cpu/modal-sandboxes/sbx-1/inner/cgroup.procs'), '123\n456\n');

      expect((await cgroups.members()).sort()).toEqual([123, 456]);
    });
  });

  describe('on a cgroup v2 only host', () => {
    const host = () => ({ root, procSelfCgroup: '0::/system.slice/app.service\n' });

    beforeEach(async () => {
      await kernelFiles('', ['cgroup.procs', 'cgroup.controllers', 'cgroup.subtree_control']);
      await kernelFiles('system.slice/app.service', ['cgroup.procs', 'cgroup.controllers', 'cgroup.subtree_control']);
      await kernelFiles('modal-sandboxes', ['cgroup.procs', 'cgroup.controllers', 'cgroup.subtree_control']);
    });

    it('enables the controllers down to a parent below the root and limits one group per sandbox', async () => {
      await kernelFiles('modal-sandboxes/sbx-1', ['cgroup.procs', 'cgroup.kill', 'pids.max', 'memory.max', 'memory.swap.max', 'cpu.max']);

      const cgroups = await SandboxCgroups.create('sbx-1', LIMITS, host());

      for (const dir of ['', 'modal-sandboxes']) {
        const subtreeControl = await read(join(dir, 'cgroup.subtree_control'));
        for (const controller of ['+pids', '+memory', '+cpu']) expect(subtreeControl).toContain(controller);
      }
      expect(await read('system.slice/app.service/cgroup.subtree_control')).toBe('');
      expect(await read('modal-sandboxes/sbx-1/pids.max')).toBe('64');
      expect(await read('modal-sandboxes/sbx-1/memory.max')).toBe(String(512 * 1024 * 1024));
      expect(await read('modal-sandboxes/sbx-1/memory.swap.max')).toBe('0');
      expect(await read('modal-sandboxes/sbx-1/cpu.max')).toBe('50000 100000');
      expect(cgroups.enforced).toEqual({ max_processes: 64, memory_bytes: 512 * 1024 * 1024, cpu_cores: 0.5 });
      expect(cgroups.procsFiles).toEqual([join(root, 'modal-sandboxes/sbx-1/cgroup.procs')]);
    });

    it('enforces memory without swap accounting and reports controllers that could not be enabled as null', async () => {
      await kernelFiles('modal-sandboxes/sbx-1', ['cgroup.procs', 'memory.max']);

      const cgroups = await SandboxCgroups.create('sbx-1', { ...LIMITS, cpuCores: 1 }, host());

      expect(cgroups.enforced).toEqual({ max_processes: null, memory_bytes: 512 * 1024 * 1024, cpu_cores: null });
      expect(existsSync(join(root, 'modal-sandboxes/sbx-1/memory.swap.max'))).toBe(false);
      expect(cgroups.procsFiles).toEqual([join(root, 'modal-sandboxes/sbx-1/cgroup.procs')]);
    });

    it('creates the parent when missing', async () => {
      await rm(join(root, 'modal-sandboxes'), { recursive: true });

      const cgroups = await SandboxCgroups.create('sbx-1', LIMITS, host());

      expect(existsSync(join(root, 'modal-sandboxes/sbx-1'))).toBe(true);
      expect(cgroups.procsFiles).toEqual([join(root, 'modal-sandboxes/sbx-1/cgroup.procs')]);
    });

    it('kills a group at once through cgroup.kill', async () => {
      await kernelFiles('modal-sandboxes/sbx-1', ['cgroup.procs', 'cgroup.kill']);
      const cgroups = await SandboxCgroups.locate('sbx-1', host());

      await cgroups.destroy(50);

      expect(await read('modal-sandboxes/sbx-1/cgroup.kill')).toBe('1');
    });

    it('lists leftovers and removes them with their emptied parent', async () => {
      await rm(join(root, 'modal-sandboxes'), { recursive: true });
      await mkdir(join(root, 'modal-sandboxes/sbx-a'), { recursive: true });

      expect(await SandboxCgroups.leftoverNames(host())).toEqual(['sbx-a']);
      await (await SandboxCgroups.locate('sbx-a', host())).destroy();

      expect(existsSync(join(root, 'modal-sandboxes'))).toBe(false);
    });
  });

  it.each(['', '.', '..', 'a/b', '../x'])('refuses the group name %j, which could reach other groups', async (name) => {
    await expect(SandboxCgroups.locate(name, { root, procSelfCgroup: HYBRID_PROC_SELF_CGROUP })).rejects.toThrow('invalid sandbox cgroup name');
  });
});
