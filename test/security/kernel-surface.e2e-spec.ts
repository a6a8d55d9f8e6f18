/**
 * Hostile tenant, part 2: the kernel's attack surface as seen from a root shell in a sandbox.
 * Namespaces, mounts and rarely needed system calls must be out of reach (seccomp, no
 * CAP_SYS_ADMIN, no_new_privs), and the sandbox's processes must not be host root.
 */
import {
  compileProgram,
  plantMarker,
  SANDBOX_UID_BASE,
  SANDBOX_UID_END,
  SandboxMarker,
  sandboxProcesses,
  startTenant,
  Tenant,
} from '../support/security-sandbox';

/** System calls a sandbox must not reach (see programs/syscalls.c for how each is called). */
const SYSCALLS: Array<[name: string, why: string]> = [
  ['keyctl', 'the kernel keyring (not namespaced)'],
  ['add_key', 'the kernel keyring (not namespaced)'],
  ['request_key', 'the kernel keyring and its upcalls'],
  ['bpf', 'loading BPF programs'],
  ['perf_event_open', 'performance events (side channels, a long CVE history)'],
  ['userfaultfd', 'userfaultfd (the usual helper to win kernel races)'],
  ['open_by_handle_at', 'opening files by handle, around the mount tree ("shocker")'],
  ['kexec_load', 'replacing the kernel'],
  ['kexec_file_load', 'replacing the kernel'],
  ['init_module', 'loading kernel modules'],
  ['finit_module', 'loading kernel modules'],
  ['delete_module', 'unloading kernel modules'],
  ['unshare_user', 'unshare(CLONE_NEWUSER): a nested user namespace, with every capability in it'],
  ['unshare_mount', 'unshare(CLONE_NEWNS): a mount namespace of its own'],
  ['unshare_cgroup', 'unshare(CLONE_NEWCGROUP)'],
  ['unshare_net', 'unshare(CLONE_NEWNET)'],
  ['clone_newuser', 'clone(CLONE_NEWUSER)'],
  ['clone_newns', 'clone(CLONE_NEWNS)'],
  ['setns', 'setns() into a namespace'],
  ['mount', 'mount(2) of a tmpfs'],
  ['umount2', 'umount2(2)'],
  ['pivot_root', 'pivot_root(2)'],
  ['fsopen', 'the new mount API (fsopen)'],
  ['open_tree', 'the new mount API (open_tree with OPEN_TREE_CLONE)'],
];
/** How a refused call fails: seccomp's EPERM, a missing capability, or a call the kernel lacks. */
const REFUSED = /^errno=(EPERM|EACCES|ENOSYS)$/;
const CAP_SYS_ADMIN = 21n;

describe('a hostile tenant with a root shell cannot reach the kernel attack surface', () => {
  let tenant: Tenant;
  let id: string;
  const outcome = new Map<string, string>();

  beforeAll(async () => {
    tenant = await startTenant();
    id = await tenant.create();
    await tenant.install(id, '/tmp/syscalls', await compileProgram('syscalls'));
    const result = await tenant.exec(id, ['/tmp/syscalls', ...SYSCALLS.map(([name]) => name)]);
    for (const line of result.stdout.split('\n')) {
      const [name, ...rest] = line.split(' ');
      if (name) outcome.set(name, rest.join(' '));
    }
  });

  afterAll(async () => {
    await tenant?.app.close({ purge: true });
  });

  it.each(SYSCALLS)('cannot call %s (%s)', (name) => {
    expect({ name, outcome: outcome.get(name) }).toEqual({ name, outcome: expect.stringMatching(REFUSED) });
  });

  it('cannot create a nested user namespace (unshare -U true; unshare -U -r true)', async () => {
    const plain = await tenant.exec(id, ['unshare', '-U', 'true']);
    const mapped = await tenant.exec(id, ['unshare', '-U', '-r', 'true']);
    expect({ plain: plain.exit_code !== 0, mapped: mapped.exit_code !== 0 }).toEqual({ plain: true, mapped: true });
  });

  it('cannot create a mount namespace (unshare -m true)', async () => {
    const result = await tenant.exec(id, ['unshare', '-m', 'true']);
    expect(result.exit_code).not.toBe(0);
  });

  it('cannot mount a tmpfs (mount -t tmpfs none /mnt)', async () => {
    const result = await tenant.sh(id, 'mount -t tmpfs none /mnt; echo "exit $?"; grep " /mnt " /proc/self/mountinfo; umount /mnt 2>/dev/null; true');
    expect(result.stdout).not.toMatch(/^exit 0$/m);
    expect(result.stdout).not.toContain('tmpfs');
  });

  /** The NoNewPrivs, Seccomp and CapEff of a /proc/<pid>/status text. */
  const hardening = (status: string) => {
    const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)`, 'm').exec(status)?.[1];
    const capEff = BigInt(`0x${field('CapEff') ?? '0'}`);
    return { noNewPrivs: field('NoNewPrivs'), seccomp: field('Seccomp'), capSysAdmin: ((capEff >> CAP_SYS_ADMIN) & 1n) === 1n };
  };
  const HARDENED = { noNewPrivs: '1', seccomp: '2', capSysAdmin: false };

  it('runs an exec\'d process with NoNewPrivs: 1, Seccomp: 2 (filter) and without CAP_SYS_ADMIN in CapEff', async () => {
    const status = (await tenant.exec(id, ['cat', '/proc/self/status'])).stdout;
    expect(hardening(status)).toEqual(HARDENED);
  });

  it('runs every process of the sandbox (its init, background processes, a shell like the one Claude runs) with NoNewPrivs: 1, Seccomp: 2 and without CAP_SYS_ADMIN', async () => {
    await tenant.sh(id, 'setsid sleep 600 </dev/null >/dev/null 2>&1 & echo started');
    const result = await tenant.exec(id, ['bash', '-lc', 'for s in /proc/[0-9]*/status; do echo "== $s"; cat "$s" 2>/dev/null; done']);
    const processes = result.stdout.split('== ').filter(Boolean).map((block) => {
      const [path, ...rest] = block.split('\n');
      const status = rest.join('\n');
      return { path, name: /^Name:\s*(.*)$/m.exec(status)?.[1], ...hardening(status) };
    });
    expect(processes.length).toBeGreaterThanOrEqual(3);
    const weak = processes.filter((process) => process.name !== undefined && (process.noNewPrivs !== '1' || process.seccomp !== '2' || process.capSysAdmin));
    expect(weak).toEqual([]);
  });

  describe('seen from the host', () => {
    let marker: SandboxMarker;

    beforeAll(async () => {
      marker = await plantMarker(tenant, id);
    });

    it(`runs the sandbox's processes (its pid namespace, seen from the host) as host uids ${SANDBOX_UID_BASE}..${SANDBOX_UID_END}, never as host root`, async () => {
      // Members of its cgroups outside its pid namespace are the engine's host-side processes on their way in.
      const processes = sandboxProcesses(marker).filter((process) => process.pidNs === marker.pidNs);
      expect(processes.map((process) => process.pid)).toContain(marker.hostPid);
      const outside = processes
        .filter((process) => process.uids.some((uid) => uid < SANDBOX_UID_BASE || uid > SANDBOX_UID_END))
        .map((process) => ({ pid: process.pid, uids: process.uids, argv: process.argv.join(' ').slice(0, 120) }));
      expect(outside).toEqual([]);
    });
  });
});
