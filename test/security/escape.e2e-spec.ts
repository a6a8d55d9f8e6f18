/**
 * Hostile tenant, part 1: escapes. The attacker has the public API and a root shell in its sandbox
 * (exec); every attack is run from inside, and its effect is judged from the host.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import {
  cgroupTree,
  compileProgram,
  hashAll,
  hostCgroup2Mount,
  hostCgroupMounts,
  hostEntryBinaries,
  plantMarker,
  processesLeft,
  randomToken,
  SANDBOX_UID_BASE,
  SANDBOX_UID_END,
  SandboxMarker,
  sandboxProcesses,
  sleep,
  startTenant,
  Tenant,
} from '../support/security-sandbox';

const run = promisify(execFile);
/** Files of a sandbox's cgroups that hold its limits (v1 and v2 names). */
const LIMIT_FILES = ['pids.max', 'memory.max', 'memory.high', 'memory.swap.max', 'memory.limit_in_bytes', 'memory.memsw.limit_in_bytes', 'cpu.max', 'cpu.cfs_quota_us', 'cpu.cfs_period_us'];

describe('a hostile tenant with a root shell cannot escape its sandbox', () => {
  let tenant: Tenant;
  let id: string;
  let marker: SandboxMarker;
  let binariesBefore: Record<string, string>;
  let hostBinaries: string[];

  beforeAll(async () => {
    const claudeBin = join(dirname(require.resolve('@anthropic-ai/claude-code/package.json')), 'bin', 'claude.exe');
    hostBinaries = hostEntryBinaries([claudeBin]);
    binariesBefore = await hashAll(hostBinaries);
    tenant = await startTenant();
    id = await tenant.create();
    marker = await plantMarker(tenant, id);
  });

  afterAll(async () => {
    await tenant?.app.close({ purge: true });
  });

  it('cannot get a writable descriptor on a host binary through /proc/<pid>/exe of a process entering the sandbox', async () => {
    // The host binaries' inodes: the race program also tries them when the sandbox sees them under a path of its own.
    const hostInodes = new Set(hostBinaries.map((path) => `${statSync(path).dev}:${statSync(path).ino}`));
    await tenant.install(id, '/tmp/race', await compileProgram('race'));
    const started = await tenant.sh(id, `rm -f /tmp/race.stop; setsid /tmp/race /tmp/race.log /tmp/race.stop ${[...hostInodes].join(' ')} </dev/null >/dev/null 2>&1 & echo started`);
    expect(started.stdout).toBe('started\n');
    // Processes entering the sandbox while the race program spins over the next pids.
    const entered: number[] = [];
    try {
      for (let i = 0; i < 20; i++) entered.push((await tenant.exec(id, i % 2 === 0 ? ['true'] : ['sh', '-c', 'echo entered'], { workdir: '/' })).exit_code);
      await sleep(1000); // the race program retries its writable reopens once the entering binaries have exited
    } finally {
      await tenant.sh(id, 'touch /tmp/race.stop');
    }
    let log = '';
    for (let attempt = 0; attempt < 25 && !/^END /m.test(log); attempt++) {
      await sleep(1000); // it goes on for up to 15 s while a captured host binary stays busy
      log = (await tenant.sh(id, 'cat /tmp/race.log')).stdout;
    }
    // The race program ran in the background across all those execs, to its end.
    expect(entered).toEqual(Array(20).fill(0));
    expect(log).toMatch(/^START /m);
    expect(log).toMatch(/^END /m);
    // It only tries files outside the sandbox's view and host binaries however they are shown inside
    // (its own copy-on-write files are the tenant's to write): any writable descriptor is the hole.
    const writable = log.split('\n').filter((line) => line.startsWith('WRITABLE'));
    expect({ writable, log }).toEqual({ writable: [], log });
    expect(await hashAll(hostBinaries)).toEqual(binariesBefore);
  });

  describe('cgroups', () => {
    const cgroup2 = hostCgroup2Mount();
    const canaryGroup = `mss-security-canary-${randomToken(4)}`;
    /** Groups the attacks try to create; removed afterwards should an attack succeed. */
    const escapeGroups: string[] = [];
    let canary: ChildProcess;

    beforeAll(() => {
      if (!cgroup2) throw new Error('this host has no cgroup2 mount: the cgroup escape tests need one');
      // A host process in a host cgroup of its own: what the attacker tries to kill.
      mkdirSync(join(cgroup2, canaryGroup));
      canary = spawn('sleep', ['600'], { stdio: 'ignore' });
      writeFileSync(join(cgroup2, canaryGroup, 'cgroup.procs'), String(canary.pid));
    });

    afterAll(async () => {
      for (const mount of hostCgroupMounts()) {
        for (const group of escapeGroups) if (existsSync(join(mount.mountPoint, group))) rmdirSync(join(mount.mountPoint, group));
      }
      canary?.kill('SIGKILL');
      for (let attempt = 0; attempt < 50 && cgroup2 && existsSync(join(cgroup2, canaryGroup)); attempt++) {
        try {
          rmdirSync(join(cgroup2, canaryGroup));
        } catch {
          await sleep(100);
        }
      }
    });

    const canaryAlive = () => canary.exitCode === null && canary.signalCode === null;
    /**
     * The host's v2 and pids cgroup trees, leaving out the engine's own sandbox groups (anything
     * below a directory named like the parent of this sandbox's groups, e.g. modal-sandboxes/):
     * other sandboxes come and go meanwhile.
     */
    const hostTrees = () => {
      const sandboxParents = new Set(['modal-sandboxes', ...marker.cgroupDirs.map((dir) => dirname(dir).split('/').pop()!)]);
      return hostCgroupMounts()
        .filter((mount) => mount.controllers.length === 0 || mount.controllers.includes('pids'))
        .map((mount) => ({
          mount: mount.mountPoint,
          groups: cgroupTree(mount.mountPoint).filter((group) => !group.split('/').some((segment) => sandboxParents.has(segment))),
        }));
    };

    it('cannot kill a host cgroup through a cgroup2 mount in new cgroup and mount namespaces (unshare -C -m; cgroup.kill)', async () => {
      const before = hostTrees();
      const escape = `mss-escape-${randomToken(4)}`;
      escapeGroups.push(escape);
      const attack = await tenant.sh(
        id,
        `unshare -C -m sh -c 'mount -t cgroup2 none /mnt && ls /mnt && echo 1 > /mnt/${canaryGroup}/cgroup.kill && mkdir /mnt/${escape} && echo ESCAPED'`,
      );
      await sleep(300);
      expect({ escaped: attack.stdout.includes('ESCAPED'), canaryAlive: canaryAlive() }).toEqual({ escaped: false, canaryAlive: true });
      expect(attack.exit_code).not.toBe(0);
      expect(attack.stdout).not.toContain(canaryGroup); // the host's cgroup tree was never listed
      expect(hostTrees()).toEqual(before);
    });

    it('cannot mount cgroupfs or create a cgroup from its own namespaces (mount -t cgroup2; mkdir under /sys/fs/cgroup)', async () => {
      const before = hostTrees();
      const escape = `mss-escape-${randomToken(4)}`;
      escapeGroups.push(escape);
      const mounted = await tenant.sh(id, 'mount -t cgroup2 none /mnt && ls /mnt && echo MOUNTED');
      expect(mounted.stdout).not.toContain('MOUNTED');
      expect(mounted.exit_code).not.toBe(0);
      const created = await tenant.sh(id, `for d in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/pids /sys/fs/cgroup/memory; do mkdir "$d/${escape}" 2>/dev/null && echo "CREATED $d"; done; true`);
      expect(created.stdout).toBe('');
      expect(hostTrees()).toEqual(before);
    });

    it('cannot raise its own pids, memory or cpu limits through cgroupfs mounted in a new cgroup namespace', async () => {
      const limitFiles = marker.cgroupDirs.flatMap((dir) => LIMIT_FILES.map((file) => join(dir, file))).filter((file) => existsSync(file));
      const readLimits = () => Object.fromEntries(limitFiles.map((file) => [file, readFileSync(file, 'utf8').trim()]));
      const before = readLimits();
      const raise = [
        'for f in pids.max memory.max memory.high memory.swap.max; do [ -e "$m/$f" ] && echo max > "$m/$f" 2>/dev/null && echo "RAISED $m/$f"; done',
        'for f in memory.limit_in_bytes memory.memsw.limit_in_bytes cpu.cfs_quota_us; do [ -e "$m/$f" ] && echo -1 > "$m/$f" 2>/dev/null && echo "RAISED $m/$f"; done',
        '[ -e "$m/cpu.max" ] && echo "max 100000" > "$m/cpu.max" 2>/dev/null && echo "RAISED $m/cpu.max"',
      ].join('; ');
      const script = [
        // cgroupfs already visible in the sandbox, if any
        `for m in /sys/fs/cgroup /sys/fs/cgroup/unified /sys/fs/cgroup/pids /sys/fs/cgroup/memory /sys/fs/cgroup/cpu; do [ -d "$m" ] && { ${raise}; }; done`,
        // cgroupfs mounted in new cgroup and mount namespaces: the namespace root is the sandbox's own group
        ...['cgroup2', 'cgroup -o pids', 'cgroup -o memory', 'cgroup -o cpu'].map(
          (type) => `unshare -C -m sh -c 'm=/mnt; mount -t ${type} none /mnt 2>/dev/null && { echo "MOUNTED ${type}"; ${raise.replaceAll("'", "'\\''")}; }'`,
        ),
        'true',
      ].join('\n');
      const attack = await tenant.sh(id, script);
      expect(attack.stdout).not.toMatch(/RAISED/);
      expect(readLimits()).toEqual(before);
      expect(limitFiles.length).toBeGreaterThan(0); // the sandbox has limits to protect at all
    });
  });

  describe('planting privileged files on the volume', () => {
    let volumeDir: string;
    const chmodded: Array<[string, number]> = [];

    beforeAll(async () => {
      // The tenant's volume on the host: where the marker's volume files are (found through the files API).
      const probe = `probe-${randomToken(4)}`;
      await tenant.upload(id, probe, 'x');
      const found = await run('find', [tenant.app.dataDir, '-name', probe, '-type', 'f']);
      volumeDir = dirname(found.stdout.trim().split('\n')[0]);
      await tenant.sh(id, `rm -f /workspace/${probe}`);
      // Someone on the host who can reach the volume (DATA_DIR is 0700; opened up here on purpose).
      for (let dir = volumeDir; dir.startsWith(tenant.app.dataDir); dir = dirname(dir)) {
        const mode = statSync(dir).mode & 0o7777;
        chmodded.push([dir, mode]);
        chmodSync(dir, mode | 0o001);
      }
    });

    afterAll(() => {
      for (const [dir, mode] of chmodded) if (existsSync(dir)) chmodSync(dir, mode);
    });

    /** Runs a file as user nobody on the host. */
    const runAsNobody = async (args: string[]) => {
      try {
        const { stdout, stderr } = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...args]);
        return { code: 0, stdout, stderr };
      } catch (error) {
        const failure = error as { code?: number; stdout?: string; stderr?: string };
        return { code: failure.code ?? 1, stdout: failure.stdout ?? '', stderr: failure.stderr ?? '' };
      }
    };

    it('cannot plant a setuid-root binary on its volume that a host user can run (cp /usr/bin/id; chmod 4755)', async () => {
      const planted = await tenant.sh(id, 'cp /usr/bin/id /workspace/suid-id && chmod 4755 /workspace/suid-id; ls -ln /workspace/suid-id');
      expect(planted.stdout).toContain('suid-id'); // the tenant can create files on its volume
      const file = join(volumeDir, 'suid-id');
      const asNobody = await runAsNobody([file]);
      expect(asNobody.stdout).toMatch(/^uid=65534/); // it ran, as nobody
      expect(asNobody.stdout).not.toMatch(/euid=0\b/);
      expect(asNobody.stdout).not.toMatch(/(^|\s)uid=0\b/);
      const owner = statSync(file).uid;
      expect(owner).toBeGreaterThanOrEqual(SANDBOX_UID_BASE);
      expect(owner).toBeLessThanOrEqual(SANDBOX_UID_END);
    });

    it('cannot plant a binary with file capabilities on its volume that a host user can run (setcap cap_dac_read_search+ep)', async () => {
      await tenant.install(id, '/tmp/setfcap', await compileProgram('setfcap'));
      const planted = await tenant.sh(
        id,
        'cp /bin/cat /workspace/cap-cat && if command -v setcap >/dev/null; then setcap cap_dac_read_search+ep /workspace/cap-cat; else echo "no setcap in the sandbox, writing the xattr directly"; /tmp/setfcap /workspace/cap-cat; fi; echo "setcap exit $?"',
      );
      expect(planted.stdout).toMatch(/setcap exit \d+/);
      const file = join(volumeDir, 'cap-cat');
      const asNobody = await runAsNobody([file, '/etc/shadow']);
      expect(/^root:/m.test(asNobody.stdout)).toBe(false);
      expect(asNobody.code).not.toBe(0);
      expect(asNobody.stderr).toContain('cap-cat: /etc/shadow: Permission denied'); // it ran, and cat was refused
      const owner = statSync(file).uid;
      expect(owner).toBeGreaterThanOrEqual(SANDBOX_UID_BASE);
      expect(owner).toBeLessThanOrEqual(SANDBOX_UID_END);
    });

    it('has its volume and its root mounted nosuid,nodev (/proc/self/mountinfo)', async () => {
      const mountinfo = (await tenant.exec(id, ['cat', '/proc/self/mountinfo'])).stdout;
      const optionsOf = (target: string) => {
        const line = mountinfo.split('\n').filter((entry) => entry.split(' ')[4] === target).pop();
        return line?.split(' ')[5].split(',') ?? [];
      };
      expect(optionsOf('/')).toEqual(expect.arrayContaining(['nosuid', 'nodev']));
      expect(optionsOf('/workspace')).toEqual(expect.arrayContaining(['nosuid', 'nodev']));
    });
  });

  it('leaves no process, no cgroup and no changed host binary behind after DELETE', async () => {
    expect(sandboxProcesses(marker).length).toBeGreaterThan(0);
    await tenant.remove(id);
    const left = await processesLeft(marker);
    expect(left.map((process) => ({ pid: process.pid, argv: process.argv }))).toEqual([]);
    const inUidRange = left.filter((process) => process.uids.some((uid) => uid >= SANDBOX_UID_BASE && uid <= SANDBOX_UID_END));
    expect(inUidRange).toEqual([]);
    expect(marker.cgroupDirs.filter((dir) => existsSync(dir))).toEqual([]);
    expect(await hashAll(hostBinaries)).toEqual(binariesBefore);
  });
});
