import { execFileSync } from 'node:child_process';
import { ProviderInvalidError } from '../sandbox-provider.errors';
import type { HostTools } from './host-tools';
import { execHostScript, execStdinScript, idMapLine, launchArgv, launchParametersText, type SandboxHelper, shellQuote } from './sandbox-commands';

const tools: HostTools = {
  bwrap: '/usr/bin/bwrap',
  unshare: '/usr/bin/unshare',
  setpriv: '/usr/bin/setpriv',
  umount: '/usr/bin/umount',
  mkfs: '/usr/sbin/mkfs.ext4',
  mount: '/usr/bin/mount',
  mknod: '/usr/bin/mknod',
  cp: '/usr/bin/cp',
  sh: '/bin/sh',
  slirp4netns: '/usr/bin/slirp4netns',
};
const helper: SandboxHelper = { binary: '/srv/mss/dist/native/sandbox-helper', seccompFilter: '/srv/mss/dist/native/sandbox-seccomp.bpf', egressFilter: '/srv/mss/dist/native/egress-filter' };
const ids = { base: 100000, count: 65536 };
const procsFiles = ['/sys/fs/cgroup/pids/modal-sandboxes/sbx-1/cgroup.procs', "/sys/fs/cgroup/memory/it's/cgroup.procs"];

describe('shellQuote', () => {
  it.each(["plain", "it's", "$HOME `id` \\n", '', 'line\nbreak'])('makes the shell read %j back unchanged', (word) => {
    const echoed = execFileSync('/bin/sh', ['-c', `printf %s ${shellQuote(word)}`], { encoding: 'utf8' });

    expect(echoed).toBe(word);
  });
});

describe('launchArgv', () => {
  const idmappedLayers = [{ source: '/usr', target: '/data/sandboxes/sbx-1/lower/0' }];
  const makeWritableLayer = ['/usr/sbin/mkfs.ext4', '-q', '-d', '/data/sandboxes/sbx-1/rw', '/data/sandboxes/sbx-1/rw.ext4'];
  const argv = launchArgv({ tools, helper, ids, procsFiles, idmappedLayers, makeWritableLayer, fstab: '/data/sandboxes/sbx-1/fstab' });
  const script = argv[10];
  const bwrap = argv.slice(14);

  it('starts in private mount, pid and network namespaces that die with the launcher', () => {
    expect(argv.slice(0, 9)).toEqual(['/usr/bin/unshare', '--mount', '--propagation', 'private', '--pid', '--net', '--fork', '--kill-child=SIGKILL', '/bin/sh']);
  });

  it('lets the sandbox bind ports below 1024 in its network namespace, which it has no capability over', () => {
    expect(script).toContain('echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start');
  });

  it('joins every cgroup, then stages the idmapped layers, /run and /proc, then mounts the fstab, before becoming bwrap', () => {
    expect(script).toContain(`echo $$ > '/sys/fs/cgroup/pids/modal-sandboxes/sbx-1/cgroup.procs' && `);
    expect(script).toContain(`echo $$ > '/sys/fs/cgroup/memory/it'\\''s/cgroup.procs' && `);
    const stage = script.indexOf(`'${helper.binary}' 'stage' '100000' '65536' '${helper.binary}' '/usr' '/data/sandboxes/sbx-1/lower/0'`);
    expect(stage).toBeGreaterThan(script.lastIndexOf('cgroup.procs'));
    const mkfs = script.indexOf(`'/usr/sbin/mkfs.ext4' '-q' '-d' '/data/sandboxes/sbx-1/rw' '/data/sandboxes/sbx-1/rw.ext4' && `);
    expect(mkfs).toBeGreaterThan(stage);
    expect(script.indexOf("'/usr/bin/mount' -a -T \"$1\"")).toBeGreaterThan(mkfs);
    expect(argv.slice(12, 14)).toEqual(['/data/sandboxes/sbx-1/fstab', '/usr/bin/bwrap']);
  });

  it('mounts the volume on the staged mount point once it is known, checking a loop device still backs its image', () => {
    expect(script).toContain(
      `if [ "$kind" = loop ]; then IFS= read -r backing < "/sys/block/\${volume#/dev/}/loop/backing_file" && [ "$backing" = "$image" ] && '/usr/bin/mount' -o nosuid,nodev,noatime,discard "$volume" /run/volume; else '/usr/bin/mount' --bind "$volume" /run/volume; fi || exit 125`,
    );
  });

  it('runs bwrap as the unprivileged host uid of the sandbox root', () => {
    expect(script).toContain(`exec '/usr/bin/setpriv' --reuid=100000 --regid=100000 --clear-groups -- "$bwrap" "$@" --bind /run/volume "$target"`);
    expect(script).toContain(`-- /run/sandbox-init init 5<'${helper.seccompFilter}'`);
  });

  it('gives bwrap user, pid, cgroup, ipc and uts namespaces (the network namespace is the launcher\'s), Docker capabilities and the seccomp filter', () => {
    expect(bwrap).toEqual(
      expect.arrayContaining(['--unshare-user', '--unshare-pid', '--as-pid-1', '--unshare-cgroup', '--unshare-ipc', '--unshare-uts', '--die-with-parent', '--new-session']),
    );
    expect(bwrap).not.toContain('--unshare-net');
    expect(bwrap.join(' ')).toContain('--userns-block-fd 4 --info-fd 3');
    expect(bwrap.join(' ')).toContain('--cap-drop ALL --cap-add CAP_CHOWN');
    expect(bwrap).not.toContain('CAP_SYS_ADMIN');
    expect(bwrap.join(' ')).toContain('--seccomp 5 --bind /run/root / --dev /dev --proc /proc --tmpfs /run --perms 1777 --dir /run/lock --ro-bind /run/init /run/sandbox-init');
  });
});

describe('idMapLine', () => {
  it('maps sandbox ids from 0 onto the host range', () => {
    expect(idMapLine(ids)).toBe('0 100000 65536\n');
  });
});

describe('launchParametersText', () => {
  it('writes volume kind and path, and mount path one per line', () => {
    expect(launchParametersText({ volume: { kind: 'loop', device: '/dev/loop3', image: '/data/volume-images/a/v.ext4' }, volumeMountPath: '/workspace' })).toBe(
      'loop\n/dev/loop3\n/data/volume-images/a/v.ext4\n/workspace\n',
    );
    expect(launchParametersText({ volume: { kind: 'directory', path: '/data/volumes/a/v' }, volumeMountPath: '/workspace' })).toBe(
      'directory\n/data/volumes/a/v\n-\n/workspace\n',
    );
  });

  it('refuses a value that would break the lines', () => {
    expect(() => launchParametersText({ volume: { kind: 'directory', path: '/data/volumes/a/v' }, volumeMountPath: '/work\nspace' })).toThrow('single lines');
  });
});

describe('execHostScript', () => {
  it('joins the cgroups, then enters the sandbox of the init whose pid comes on stdin through the helper', () => {
    const script = execHostScript(helper, procsFiles);

    expect(script.startsWith(`echo $$ > '${procsFiles[0]}' && `)).toBe(true);
    expect(script).toContain(`IFS= read -r pid && exec '${helper.binary}' enter "$pid" /bin/sh -s`);
  });
});

describe('execStdinScript', () => {
  it('exports the environment, enters the workdir and runs the quoted argv with stdin closed', () => {
    const script = execStdinScript({ GREETING: "it's me", EMPTY: '' }, '/work space', ['printf', '%s|', 'a b', '$HOME']);

    expect(script).toBe(
      "export GREETING='it'\\''s me'\nexport EMPTY=''\ncd -- '/work space' || exit 1\nexec 'printf' '%s|' 'a b' '$HOME' </dev/null\n",
    );
  });

  it('runs as written in a real shell', () => {
    const script = execStdinScript({ GREETING: "it's me" }, '/', ['sh', '-c', 'printf "%s|%s" "$GREETING" "$(pwd)"']);

    expect(execFileSync('/bin/sh', ['-s'], { input: script, encoding: 'utf8', env: {} })).toBe("it's me|/");
  });

  it.each([
    [{ 'BAD-NAME': 'x' }, ['true'], 'exec: invalid environment variable name: BAD-NAME'],
    [{ OK: 'a\0b' }, ['true'], 'NUL bytes'],
    [{}, ['echo', 'a\0b'], 'NUL bytes'],
  ])('refuses what no process can receive: %j %j', (env, argv, message) => {
    const build = () => execStdinScript(env, '/', argv);

    expect(build).toThrow(ProviderInvalidError);
    expect(build).toThrow(message);
  });
});
