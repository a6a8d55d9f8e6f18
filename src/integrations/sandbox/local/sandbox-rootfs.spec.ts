import { composeAccounts, type ComposedEntry, type HostFile, type HostSystem, planEtc, planHostBase, planVar, shippedEtcPaths, treeMatcher } from './sandbox-rootfs';

function dir(path: string, mode = 0o755, uid = 0, gid = 0): HostFile {
  return { path, kind: 'directory', mode: 0o40000 | mode, uid, gid, size: 4096, mtimeMs: 1 };
}
function file(path: string, mode = 0o644, uid = 0, gid = 0): HostFile {
  return { path, kind: 'file', mode: 0o100000 | mode, uid, gid, size: 10, mtimeMs: 2 };
}
function link(path: string, target: string): HostFile {
  return { path, kind: 'symlink', mode: 0o120777, uid: 0, gid: 0, size: target.length, mtimeMs: 3, target };
}

const PASSWD = ['root:x:0:0:root:/root:/bin/bash', '_apt:x:42:65534::/nonexistent:/usr/sbin/nologin', 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin', 'alice:x:1000:1000:Alice:/home/alice:/bin/bash', ''].join('\n');
const GROUP = ['root:x:0:', 'shadow:x:42:', 'sudo:x:27:alice', 'audio:x:29:alice,_apt', 'nogroup:x:65534:', 'alice:x:1000:', ''].join('\n');

function system(overrides: Partial<HostSystem> = {}): HostSystem {
  return { etc: [dir('/etc')], shippedEtc: [], passwd: PASSWD, group: GROUP, passwordChangeDay: 20000, var: [dir('/var')], opt: [dir('/opt')], ...overrides };
}

const paths = (entries: ComposedEntry[]) => entries.map((entry) => entry.path);

describe('planHostBase', () => {
  const entries = [
    { name: 'usr', kind: 'directory' as const, mode: 0o40755 },
    { name: 'lib64', kind: 'directory' as const, mode: 0o40755 },
    { name: 'bin', kind: 'symlink' as const, mode: 0o120777, target: 'usr/bin' },
  ];

  it('overlays the host program directories, keeps top-level symlinks and adds the mount points', () => {
    const plan = planHostBase(entries, [], system());

    expect(plan.layers.map((layer) => [layer.name, layer.hostDir])).toEqual([['usr', '/usr'], ['lib64', '/lib64']]);
    expect(plan.skeletonSymlinks).toEqual([['bin', 'usr/bin']]);
    expect(plan.skeletonDirs).toEqual(expect.arrayContaining([['usr', 0o755], ['etc', 0o755], ['var', 0o755], ['opt', 0o755], ['proc', 0o555], ['tmp', 0o1777], ['root', 0o700]]));
  });

  it('composes /etc, /var and an empty /opt instead of showing them', () => {
    const plan = planHostBase(entries, [], system({ opt: [dir('/opt', 0o755, 0, 50)] }));

    expect(plan.composed.map((composed) => composed.name)).toEqual(['etc', 'var', 'opt']);
    expect(plan.composed[2].entries).toEqual([{ path: '/opt', kind: 'directory', mode: 0o755, uid: 0, gid: 50 }]);
  });

  it('turns hidden paths inside program directories into whiteouts, ignoring the others', () => {
    const plan = planHostBase(entries, ['/usr/local/images', '/usr', '/usrx/y', '/home/user', '/etc/agent'], system());

    expect(Object.fromEntries(plan.layers.map((layer) => [layer.name, layer.whiteouts]))).toEqual({ usr: ['local/images'], lib64: [] });
  });
});

describe('planEtc', () => {
  it('copies the allowlisted files and those packages ship, with their owners and modes', () => {
    const etc = [dir('/etc'), file('/etc/nsswitch.conf'), dir('/etc/apt'), file('/etc/apt/sources.list'), dir('/etc/default'), file('/etc/default/useradd', 0o644, 0, 4), file('/etc/motd'), file('/etc/canary-public')];

    const entries = planEtc(system({ etc, shippedEtc: ['/etc/default/useradd', '/etc/motd'] }), []);

    expect(paths(entries).filter((path) => !['/etc/passwd', '/etc/group', '/etc/shadow', '/etc/gshadow', '/etc/hostname'].includes(path))).toEqual([
      '/etc',
      '/etc/apt',
      '/etc/apt/sources.list',
      '/etc/default',
      '/etc/default/useradd',
      '/etc/motd',
      '/etc/nsswitch.conf',
    ]);
    expect(entries.find((entry) => entry.path === '/etc/default/useradd')).toEqual({ path: '/etc/default/useradd', kind: 'file', mode: 0o644, uid: 0, gid: 4, size: 10, mtimeMs: 2 });
  });

  it('never copies a file other host users cannot read, even when a package ships it', () => {
    const etc = [dir('/etc'), file('/etc/canary-secret', 0o600), file('/etc/ssl/openssl.cnf'), dir('/etc/ssl'), file('/etc/sudoers', 0o440), dir('/etc/apt'), file('/etc/apt/token.conf', 0o640, 0, 0)];

    const entries = planEtc(system({ etc, shippedEtc: ['/etc/canary-secret', '/etc/sudoers'] }), []);

    expect(paths(entries)).toEqual(expect.arrayContaining(['/etc/ssl', '/etc/ssl/openssl.cnf', '/etc/apt']));
    expect(paths(entries)).not.toEqual(expect.arrayContaining(['/etc/canary-secret']));
    expect(paths(entries)).not.toContain('/etc/sudoers');
    expect(paths(entries)).not.toContain('/etc/apt/token.conf');
  });

  it('never copies what lies in a directory other host users cannot enter', () => {
    const etc = [dir('/etc'), dir('/etc/redis', 0o770, 100, 100), file('/etc/redis/redis.conf'), dir('/etc/apt'), dir('/etc/apt/private', 0o711), file('/etc/apt/private/key')];

    const entries = planEtc(system({ etc, shippedEtc: ['/etc/redis', '/etc/redis/redis.conf'] }), []);

    expect(paths(entries).filter((path) => path.includes('redis') || path.includes('private'))).toEqual([]);
  });

  it('leaves out secrets and other services\' configuration whatever their mode', () => {
    const etc = [
      dir('/etc'),
      file('/etc/shadow', 0o644),
      file('/etc/gshadow-', 0o644),
      file('/etc/passwd-'),
      dir('/etc/ssl'),
      dir('/etc/ssl/private'),
      file('/etc/ssl/private/server.key'),
      dir('/etc/ssh'),
      file('/etc/ssh/ssh_config'),
      file('/etc/ssh/ssh_host_ed25519_key.pub'),
      dir('/etc/sudoers.d'),
      file('/etc/sudoers.d/README'),
      dir('/etc/postgresql'),
      dir('/etc/postgresql/15'),
      file('/etc/postgresql/15/pg_hba.conf'),
      dir('/etc/apt'),
      dir('/etc/apt/auth.conf.d'),
      file('/etc/apt/auth.conf.d/private.conf'),
      file('/etc/agent.env'),
    ];
    const shippedEtc = etc.map((entry) => entry.path);

    const entries = planEtc(system({ etc, shippedEtc }), ['/etc/agent.env']);

    expect(paths(entries)).toEqual(['/etc', '/etc/apt', '/etc/apt/auth.conf.d', '/etc/group', '/etc/gshadow', '/etc/hostname', '/etc/passwd', '/etc/shadow', '/etc/ssh', '/etc/ssh/ssh_config', '/etc/ssl', '/etc/sudoers.d']);
    expect(entries.find((entry) => entry.path === '/etc/shadow')).toMatchObject({ kind: 'generated' });
  });

  it('keeps symlinks as they are', () => {
    const entries = planEtc(system({ etc: [dir('/etc'), link('/etc/localtime', '/usr/share/zoneinfo/Etc/UTC')] }), []);

    expect(entries).toContainEqual({ path: '/etc/localtime', kind: 'symlink', target: '/usr/share/zoneinfo/Etc/UTC', uid: 0, gid: 0 });
  });

  it('leaves the resolver files to the additions layer, which follows the host\'s without a new base', () => {
    const etc = [dir('/etc'), file('/etc/resolv.conf'), file('/etc/hosts')];

    expect(paths(planEtc(system({ etc, shippedEtc: ['/etc/hosts'] }), []))).not.toEqual(expect.arrayContaining(['/etc/hosts']));
    expect(paths(planEtc(system({ etc }), []))).not.toContain('/etc/resolv.conf');
  });

  it('writes the accounts, shadow files readable by group shadow, and the sandbox hostname', () => {
    const entries = planEtc(system(), []);

    expect(entries.filter((entry) => entry.kind === 'generated').map(({ path, mode, uid, gid }) => [path, mode, uid, gid])).toEqual([
      ['/etc/group', 0o644, 0, 0],
      ['/etc/gshadow', 0o640, 0, 42],
      ['/etc/hostname', 0o644, 0, 0],
      ['/etc/passwd', 0o644, 0, 0],
      ['/etc/shadow', 0o640, 0, 42],
    ]);
    expect(entries.find((entry) => entry.path === '/etc/hostname')).toMatchObject({ content: 'sandbox\n' });
  });
});

describe('composeAccounts', () => {
  it('keeps system accounts, nobody and nogroup, and drops people and their group memberships', () => {
    const accounts = composeAccounts(PASSWD, GROUP, 20000);

    expect(accounts.passwd).toBe(['root:x:0:0:root:/root:/bin/bash', '_apt:x:42:65534::/nonexistent:/usr/sbin/nologin', 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin', ''].join('\n'));
    expect(accounts.group).toBe(['root:x:0:', 'shadow:x:42:', 'sudo:x:27:', 'audio:x:29:_apt', 'nogroup:x:65534:', ''].join('\n'));
  });

  it('locks every password in the shadow files', () => {
    const accounts = composeAccounts(PASSWD, GROUP, 20000);

    expect(accounts.shadow).toBe(['root:*:20000:0:99999:7:::', '_apt:*:20000:0:99999:7:::', 'nobody:*:20000:0:99999:7:::', ''].join('\n'));
    expect(accounts.gshadow).toBe(['root:*::', 'shadow:*::', 'sudo:*::', 'audio:*::_apt', 'nogroup:*::', ''].join('\n'));
  });

  it('ignores malformed lines and NIS entries', () => {
    expect(composeAccounts('+::::::\n# comment\nbin:x:2:2:bin:/bin\nroot:x:0:0:root:/root:/bin/sh\n', '+:::\n', 1).passwd).toBe('root:x:0:0:root:/root:/bin/sh\n');
  });
});

describe('planVar', () => {
  const scanned = [
    dir('/var'),
    dir('/var/lib'),
    dir('/var/lib/dpkg'),
    file('/var/lib/dpkg/status'),
    file('/var/lib/dpkg/lock', 0o640),
    dir('/var/lib/dpkg/info'),
    file('/var/lib/dpkg/info/cowsay.postinst', 0o755),
    dir('/var/lib/apt'),
    file('/var/lib/apt/extended_states'),
    dir('/var/lib/apt/lists'),
    file('/var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease'),
    dir('/var/lib/apt/lists/partial', 0o700, 42, 0),
    dir('/var/cache'),
    dir('/var/cache/debconf'),
    file('/var/cache/debconf/config.dat'),
    file('/var/cache/debconf/passwords.dat', 0o600),
    dir('/var/mail', 0o2775, 0, 8),
    dir('/var/lib/postgresql', 0o755, 105, 105),
    file('/var/lib/postgresql/canary'),
  ];

  it('copies the package manager\'s readable state and nothing else of the host', () => {
    const entries = planVar(scanned, []);

    expect(paths(entries).filter((path) => /^\/var\/(lib\/(dpkg|apt)|cache\/debconf)/.test(path))).toEqual([
      '/var/cache/debconf',
      '/var/cache/debconf/config.dat',
      '/var/lib/apt',
      '/var/lib/apt/extended_states',
      '/var/lib/apt/lists',
      '/var/lib/apt/lists/partial',
      '/var/lib/dpkg',
      '/var/lib/dpkg/info',
      '/var/lib/dpkg/info/cowsay.postinst',
      '/var/lib/dpkg/status',
    ]);
    expect(paths(entries).filter((path) => path.includes('postgresql'))).toEqual([]);
  });

  it('leaves out what hidden paths name', () => {
    expect(paths(planVar(scanned, ['/var/lib/dpkg/info', '/var/tmp']))).not.toEqual(expect.arrayContaining(['/var/lib/dpkg/info']));
    expect(paths(planVar(scanned, ['/var/tmp']))).not.toContain('/var/tmp');
  });

  it('adds empty directories with the host\'s owners and modes where it has them, and the run and lock symlinks', () => {
    const entries = planVar(scanned, []);

    expect(entries).toEqual(
      expect.arrayContaining([
        { path: '/var/tmp', kind: 'directory', mode: 0o1777, uid: 0, gid: 0 },
        { path: '/var/mail', kind: 'directory', mode: 0o2775, uid: 0, gid: 8 },
        { path: '/var/lib/apt/lists/partial', kind: 'directory', mode: 0o700, uid: 42, gid: 0 },
        { path: '/var/cache/apt/archives/partial', kind: 'directory', mode: 0o700, uid: 0, gid: 0 },
        { path: '/var/log', kind: 'directory', mode: 0o755, uid: 0, gid: 0 },
        { path: '/var/run', kind: 'symlink', target: '/run', uid: 0, gid: 0 },
        { path: '/var/lock', kind: 'symlink', target: '/run/lock', uid: 0, gid: 0 },
      ]),
    );
  });

  it('lists every directory before what it holds', () => {
    const entries = planVar(scanned, []);

    for (const [index, entry] of entries.entries()) {
      const parent = entry.path.slice(0, entry.path.lastIndexOf('/'));
      if (parent !== '') expect(paths(entries).indexOf(parent)).toBeLessThan(index);
    }
  });
});

describe('shippedEtcPaths', () => {
  it('reads the /etc paths of dpkg file lists and conffiles, flags and all', () => {
    const list = '/.\n/etc\n/etc/cowsay.conf\n/usr/games/cowsay\n';
    const conffiles = '/etc/cowsay.conf\nremove-on-upgrade /etc/dpkg/dpkg.cfg.d/old-hook\n';

    expect(shippedEtcPaths([list, conffiles, '/usr/lib/x\n'])).toEqual(['/etc/cowsay.conf', '/etc/dpkg/dpkg.cfg.d/old-hook']);
  });
});

describe('treeMatcher', () => {
  it('matches a path or what lies under it, `*` within one name', () => {
    const matches = treeMatcher(['ssl/certs', 'python3*', 'ssh/ssh_host_*', 'sudoers.d/*']);

    expect(['ssl/certs', 'ssl/certs/a.pem', 'python3', 'python3.11/sitecustomize.py', 'ssh/ssh_host_rsa_key', 'sudoers.d/admins'].filter(matches)).toHaveLength(6);
    expect(['ssl', 'ssl/certsx', 'ssl/private/key', 'ssh/ssh_config', 'sudoers.d', 'xpython3'].filter(matches)).toEqual([]);
  });

  it('takes dots and other characters literally', () => {
    expect(treeMatcher(['ld.so.conf'])('ldxsoxconf')).toBe(false);
    expect(treeMatcher([])('anything')).toBe(false);
  });
});
