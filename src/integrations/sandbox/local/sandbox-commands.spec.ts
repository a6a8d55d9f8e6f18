import { execFileSync } from 'node:child_process';
import { ProviderInvalidError } from '../sandbox-provider.errors';
import type { HostTools } from './host-tools';
import { execHostScript, execStdinScript, launchArgv, launchParametersText, ptyArgv, shellQuote } from './sandbox-commands';

const tools: HostTools = {
  bwrap: '/usr/bin/bwrap',
  unshare: '/usr/bin/unshare',
  nsenter: '/usr/bin/nsenter',
  mount: '/usr/bin/mount',
  mknod: '/usr/bin/mknod',
  cp: '/usr/bin/cp',
  sh: '/bin/sh',
};
const procsFiles = ['/sys/fs/cgroup/pids/modal-sandboxes/sbx-1/cgroup.procs', "/sys/fs/cgroup/memory/it's/cgroup.procs"];

describe('shellQuote', () => {
  it.each(["plain", "it's", "$HOME `id` \\n", '', 'line\nbreak'])('makes the shell read %j back unchanged', (word) => {
    const echoed = execFileSync('/bin/sh', ['-c', `printf %s ${shellQuote(word)}`], { encoding: 'utf8' });

    expect(echoed).toBe(word);
  });
});

describe('launchArgv', () => {
  const argv = launchArgv({ tools, procsFiles, fstab: '/data/sandboxes/sbx-1/fstab', rootDir: '/data/sandboxes/sbx-1/root' });

  it('starts in private mount and pid namespaces that die with the launcher', () => {
    expect(argv.slice(0, 8)).toEqual(['/usr/bin/unshare', '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child=SIGKILL', '/bin/sh']);
  });

  it('joins every cgroup and mounts the fstab before becoming bwrap', () => {
    const script = argv[9];

    expect(script).toContain(`echo $$ > '/sys/fs/cgroup/pids/modal-sandboxes/sbx-1/cgroup.procs' && `);
    expect(script).toContain(`echo $$ > '/sys/fs/cgroup/memory/it'\\''s/cgroup.procs' && `);
    expect(script.indexOf("'/usr/bin/mount' -a -T \"$1\"")).toBeGreaterThan(script.lastIndexOf('cgroup.procs'));
    expect(argv.slice(11, 13)).toEqual(['/data/sandboxes/sbx-1/fstab', '/usr/bin/bwrap']);
  });

  it('gives bwrap a user namespace mapped by the service, its own ipc and uts, the root and a /dev', () => {
    const bwrap = argv.slice(14);

    expect(bwrap).toEqual(
      expect.arrayContaining(['--unshare-user', '--unshare-ipc', '--unshare-uts', '--die-with-parent', '--new-session']),
    );
    expect(bwrap.join(' ')).toContain('--userns-block-fd 4 --info-fd 3');
    expect(bwrap.join(' ')).toContain('--bind /data/sandboxes/sbx-1/root / --dev /dev');
    expect(bwrap).not.toContain('--proc');
    expect(bwrap).not.toContain('--unshare-net');
  });
});

describe('launchParametersText', () => {
  it('writes network, volume directory and mount path one per line', () => {
    expect(launchParametersText({ network: 'none', volumeDir: '/data/volumes/a/v', volumeMountPath: '/workspace' })).toBe('none\n/data/volumes/a/v\n/workspace\n');
  });

  it('refuses a value that would break the lines', () => {
    expect(() => launchParametersText({ network: 'open', volumeDir: '/data/volumes/a/v', volumeMountPath: '/work\nspace' })).toThrow('single lines');
  });
});

describe('execHostScript', () => {
  it('joins the cgroups, then enters every namespace and the root of the init whose pid comes on stdin', () => {
    const script = execHostScript(tools, procsFiles);

    expect(script.startsWith(`echo $$ > '${procsFiles[0]}' && `)).toBe(true);
    expect(script).toContain(`IFS= read -r pid && exec '/usr/bin/nsenter' -t "$pid" -U -m -p -i -u -n -r -w -- /bin/sh -s`);
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

describe('ptyArgv', () => {
  it('wraps the quoted command in script(1)', () => {
    expect(ptyArgv(['echo', "it's"])).toEqual(['script', '-qfec', "'echo' 'it'\\''s'", '/dev/null']);
  });
});
