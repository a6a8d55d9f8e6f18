/**
 * Hostile tenant, part 4: exhausting the host's resources from a root shell in a sandbox, bounded so
 * that a missing limit costs the host a few seconds and a few hundred MB, not its life. Limits come
 * from SANDBOX_MAX_PROCESSES, SANDBOX_MEMORY_LIMIT_MB, SANDBOX_DISK_LIMIT_MB and SANDBOX_CPU_LIMIT
 * (left at its default of 1 core).
 */
import { existsSync } from 'node:fs';
import { api } from '../support/http';
import { allocatedBytes, compileProgram, plantMarker, processesLeft, randomToken, SandboxMarker, sandboxProcesses, sleep, startTenant, Tenant } from '../support/security-sandbox';

const MAX_PROCESSES = 100;
const MEMORY_LIMIT_MB = 256;
const DISK_LIMIT_MB = 256;
/** Room for whatever else changes the host filesystem meanwhile (logs, other tests). */
const FREE_SPACE_TOLERANCE_BYTES = 48 * 1024 * 1024;
const DISK_FULL = /No space left on device|Disk quota exceeded/;

describe('a hostile tenant with a root shell cannot exhaust the host', () => {
  let tenant: Tenant;
  let id: string;
  let bystander: string;
  let marker: SandboxMarker;

  beforeAll(async () => {
    tenant = await startTenant({
      env: { SANDBOX_MAX_PROCESSES: String(MAX_PROCESSES), SANDBOX_MEMORY_LIMIT_MB: String(MEMORY_LIMIT_MB), SANDBOX_DISK_LIMIT_MB: String(DISK_LIMIT_MB) },
    });
    id = await tenant.create();
    bystander = await tenant.create({ volume_name: 'bystander' });
    marker = await plantMarker(tenant, id);
  });

  afterAll(async () => {
    await tenant?.app.close({ purge: true });
  });

  /** The service answers, and so does another sandbox. */
  const expectServiceHealthy = async () => {
    const started = Date.now();
    const health = await api(tenant.app.url).get('/api/health');
    expect(health.status).toBe(200);
    const other = await tenant.exec(bystander, ['echo', 'alive'], { timeoutSeconds: 20 });
    expect(other.stdout).toBe('alive\n');
    expect(Date.now() - started).toBeLessThan(10_000);
  };

  it('cannot use more than ~1 core with 4 busy loops for 3 s (SANDBOX_CPU_LIMIT default)', async () => {
    // CPU time of the loops (reaped children of the shell, /proc/<shell>/stat fields 16 and 17) over wall time.
    const result = await tenant.sh(
      id,
      'read s _ < /proc/uptime; for i in 1 2 3 4; do timeout 3 sh -c "while :; do :; done" & done; wait; read e _ < /proc/uptime; set -- $(cat /proc/$$/stat); echo "$s $e ${16} ${17} $(getconf CLK_TCK)"',
      30,
    );
    const [start, end, cutime, cstime, ticks] = result.stdout.trim().split(' ').map(Number);
    const cores = (cutime + cstime) / ticks / (end - start);
    expect(cores).toBeGreaterThan(0.2); // the loops did run
    expect(cores).toBeLessThanOrEqual(1.2);
  });

  it.each([
    ['its volume', '/workspace'],
    ['its root (/tmp)', '/tmp'],
  ])(`cannot write past SANDBOX_DISK_LIMIT_MB=${DISK_LIMIT_MB} on %s (dd 400 MB fails with ENOSPC/EDQUOT) and the host gets the space back`, async (_where, dir) => {
    const file = `${dir}/big-${randomToken(4)}`;
    // What the service's data directory (every sandbox layer and volume image) takes on the host's
    // disk: unlike the disk's free space, other test workers writing meanwhile do not move it.
    const before = allocatedBytes(tenant.app.dataDir);
    const written = await tenant.sh(id, `dd if=/dev/zero of=${file} bs=1M count=400 conv=fsync 2>&1; echo "dd exit $?"; ls -l ${file}`, 120);
    await tenant.sh(id, `rm -f ${file}; sync`);
    // Freed blocks of a filesystem image reach the host when its journal commits (discard): allow a few seconds.
    let after = allocatedBytes(tenant.app.dataDir);
    for (let attempt = 0; attempt < 20 && Math.abs(after - before) > FREE_SPACE_TOLERANCE_BYTES; attempt++) {
      await sleep(500);
      after = allocatedBytes(tenant.app.dataDir);
    }
    expect(written.stdout).toMatch(DISK_FULL);
    expect(written.stdout).not.toMatch(/^dd exit 0$/m);
    expect(Math.abs(after - before)).toBeLessThanOrEqual(FREE_SPACE_TOLERANCE_BYTES);
  });

  it(`is OOM-killed inside when it allocates more than SANDBOX_MEMORY_LIMIT_MB=${MEMORY_LIMIT_MB} while the service stays healthy`, async () => {
    await tenant.install(id, '/tmp/hog', await compileProgram('hog'));
    const result = await tenant.exec(id, ['/tmp/hog', String(MEMORY_LIMIT_MB * 2)], { timeoutSeconds: 60 });
    const reached = Math.max(0, ...[...result.stdout.matchAll(/allocated (\d+) MB/g)].map((match) => Number(match[1])));
    expect({ done: result.stdout.includes('done'), killed: result.exit_code !== 0 }).toEqual({ done: false, killed: true });
    expect(reached).toBeLessThanOrEqual(MEMORY_LIMIT_MB);
    await expectServiceHealthy();
  });

  it(`stops a fork bomb at SANDBOX_MAX_PROCESSES=${MAX_PROCESSES} while the API still answers`, async () => {
    // Bounded: 1500 background processes at most, each gone after 8 s, even with no limit at all.
    const name = `/tmp/bomb-${randomToken(4)}`;
    const bomb = tenant.sh(id, `cp /bin/sleep ${name} && i=0; while [ $i -lt 1500 ]; do ${name} 8 & i=$((i+1)); done 2>&1; echo "forked $i"`, 60);
    let peak = 0;
    const until = Date.now() + 4000;
    while (Date.now() < until) {
      peak = Math.max(peak, sandboxProcesses(marker).length);
      await sleep(200);
    }
    await expectServiceHealthy();
    const result = await bomb;
    expect(result.stdout + result.stderr).not.toMatch(/forked 1500/);
    expect(peak).toBeLessThanOrEqual(MAX_PROCESSES + 2); // + the sandbox's pid 1 when the engine keeps it outside the group
    // and the sandbox recovers once its processes are gone
    await sleep(6000);
    const after = await tenant.exec(id, ['echo', 'recovered'], { timeoutSeconds: 20 });
    expect(after.stdout).toBe('recovered\n');
  });

  it('leaves no process and no cgroup behind after DELETE', async () => {
    await tenant.remove(id);
    await tenant.remove(bystander);
    const left = await processesLeft(marker);
    expect(left.map((process) => ({ pid: process.pid, argv: process.argv }))).toEqual([]);
    expect(marker.cgroupDirs.filter((dir) => existsSync(dir))).toEqual([]);
  });
});
