/**
 * Hostile tenant, part 3: what of the host a root shell in a sandbox can see. The host view is an
 * allowlist: no host /var state, a limited /etc, only the Claude CLI under /opt, no DATA_DIR, no
 * host processes, no host cgroup tree and no secret of the service anywhere.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashAll, plantMarker, processesLeft, randomToken, SandboxMarker, startTenant, Tenant } from '../support/security-sandbox';

const NAME = `mss-canary-${randomToken(4)}`;

describe('a hostile tenant with a root shell sees nothing of the host it should not', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mss-e2e-'));
  /** Root-only host files with random content, planted before the app (and its cached base view) starts. */
  const canaries: Record<string, { path: string; content: string }> = {
    '/etc': { path: `/etc/${NAME}`, content: `etc-${randomToken()}` },
    '/opt': { path: `/opt/${NAME}`, content: `opt-${randomToken()}` },
    '/var/lib': { path: `/var/lib/${NAME}`, content: `var-lib-${randomToken()}` },
    DATA_DIR: { path: join(dataDir, NAME), content: `data-dir-${randomToken()}` },
  };
  const apiKey = `sk-test-canary-${randomToken()}`;
  const envSecret = `env-canary-${randomToken()}`;
  let canaryHashes: Record<string, string>;
  let tenant: Tenant;
  let id: string;
  let marker: SandboxMarker;

  beforeAll(async () => {
    for (const { path, content } of Object.values(canaries)) writeFileSync(path, `${content}\n`, { mode: 0o600 });
    canaryHashes = await hashAll(Object.values(canaries).map(({ path }) => path));
    process.env.MSS_SECURITY_CANARY = envSecret; // in the service's own environment too
    tenant = await startTenant({ reuse: { dataDir }, env: { ANTHROPIC_API_KEY: apiKey } });
    id = await tenant.create();
    marker = await plantMarker(tenant, id);
  });

  afterAll(async () => {
    delete process.env.MSS_SECURITY_CANARY;
    await tenant?.app.close({ purge: true });
    for (const { path } of Object.values(canaries)) rmSync(path, { force: true });
    rmSync(dataDir, { recursive: true, force: true });
  });

  it.each(Object.keys(canaries))('cannot read a root-only host file planted in %s (cat)', async (where) => {
    const { path, content } = canaries[where];
    const result = await tenant.exec(id, ['cat', path]);
    expect({ exit_code: result.exit_code === 0 ? 0 : 'failed', leaked: result.stdout.includes(content) }).toEqual({ exit_code: 'failed', leaked: false });
  });

  it('cannot find the planted host files anywhere in its view (find /)', async () => {
    const result = await tenant.sh(id, `find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -name '${NAME}' -print 2>/dev/null; true`, 120);
    expect(result.stdout).toBe('');
  });

  it('does not see host service state under /var/lib (postgresql, redis, mysql, a file planted there)', async () => {
    const result = await tenant.sh(id, 'ls -a /var/lib 2>/dev/null; true');
    const entries = result.stdout.split('\n');
    expect(entries.filter((entry) => /^(postgresql|redis|mysql|mongodb|docker|containerd)$/.test(entry))).toEqual([]);
    expect(entries).not.toContain(NAME);
  });

  it('sees nothing but the Claude CLI under /opt', async () => {
    const result = await tenant.sh(id, 'ls -A /opt 2>/dev/null; true');
    const entries = result.stdout.split('\n').filter(Boolean);
    expect(entries.filter((entry) => !/claude/i.test(entry))).toEqual([]);
  });

  it('sees only its own processes in /proc (a handful, none of them the service or another host process)', async () => {
    const result = await tenant.sh(id, 'for p in /proc/[0-9]*; do printf "%s " "${p#/proc/}"; tr "\\0" " " < "$p/cmdline" 2>/dev/null; echo; done');
    const processes = result.stdout.split('\n').filter(Boolean);
    expect(processes.length).toBeLessThanOrEqual(12);
    const hostLooking = processes.filter((line) => /\bnode\b|jest|postgres|sandbox-spawner|\bsshd\b|systemd|\/sbin\/init/.test(line) || line.includes(tenant.app.dataDir));
    expect(hostLooking).toEqual([]);
    // the service's own pid, as the host numbers it, is no process of the sandbox
    const own = await tenant.sh(id, `tr "\\0" " " < /proc/${process.pid}/cmdline 2>/dev/null; true`);
    expect(own.stdout).not.toMatch(/node|jest/);
  });

  it('cannot learn host paths or the host\'s processes from /proc/1 (its init is no host process)', async () => {
    const result = await tenant.sh(id, 'tr "\\0" " " < /proc/1/cmdline; echo; tr "\\0" "\\n" < /proc/1/environ 2>/dev/null; readlink /proc/1/root /proc/1/cwd 2>/dev/null; true');
    expect(result.stdout).not.toContain(tenant.app.dataDir);
    expect(result.stdout).not.toMatch(/\bnode\b|jest|systemd|\/sbin\/init/);
  });

  it('does not see the host cgroup tree in /sys', async () => {
    const result = await tenant.sh(id, 'find /sys/fs/cgroup -maxdepth 3 -type d 2>/dev/null; ls /sys/fs/cgroup 2>/dev/null; true');
    const hostGroups = marker.cgroupDirs.map((dir) => dir.split('/').slice(-2).join('/'));
    expect(result.stdout).not.toMatch(/modal-sandboxes|process_api|system\.slice|user\.slice|mss-security-canary/);
    for (const group of hostGroups) expect(result.stdout).not.toContain(group);
  });

  it('finds no secret of the service in any file it can read (every readable /proc/*/environ and cmdline, /etc, /var, /tmp, /run, /root, /home, /opt, its volume)', async () => {
    const secrets = [apiKey, envSecret, readFileSync(join(dataDir, 'jwt-secret'), 'utf8').trim(), ...Object.values(canaries).map(({ content }) => content)];
    // The patterns go up through the files API, so that no command line in the sandbox holds them.
    await tenant.upload(id, '.mss-patterns', `${secrets.join('\n')}\n`);
    const result = await tenant.sh(
      id,
      [
        'grep -lsF -f /workspace/.mss-patterns /proc/[0-9]*/environ /proc/[0-9]*/cmdline',
        // every file small enough to hold a secret (the big ones are packages and wheels)
        "find /etc /var /tmp /run /root /home /opt /srv /mnt /workspace -type f -size -256k ! -name .mss-patterns -exec grep -lsF -f /workspace/.mss-patterns {} + 2>/dev/null",
        'true',
      ].join('; '),
      120,
    );
    expect(result.stdout).toBe('');
  });

  it('leaves the planted host files unchanged and no process behind after DELETE', async () => {
    await tenant.remove(id);
    const left = await processesLeft(marker);
    expect(left.map((process) => ({ pid: process.pid, argv: process.argv }))).toEqual([]);
    expect(await hashAll(Object.values(canaries).map(({ path }) => path))).toEqual(canaryHashes);
  });
});
