import { planHostBase, SandboxDirs, sandboxFstab } from './sandbox-rootfs';

describe('planHostBase', () => {
  const entries = [
    { name: 'usr', kind: 'directory' as const, mode: 0o40755 },
    { name: 'etc', kind: 'directory' as const, mode: 0o40755 },
    { name: 'var', kind: 'directory' as const, mode: 0o40755 },
    { name: 'bin', kind: 'symlink' as const, mode: 0o120777, target: 'usr/bin' },
  ];

  it('overlays host directories, keeps top-level symlinks and adds the empty mount points', () => {
    const plan = planHostBase(entries, []);

    expect(plan.layers.map((layer) => [layer.name, layer.hostDir])).toEqual([['usr', '/usr'], ['etc', '/etc'], ['var', '/var']]);
    expect(plan.skeletonSymlinks).toEqual([['bin', 'usr/bin']]);
    expect(plan.skeletonDirs).toEqual(expect.arrayContaining([['usr', 0o755], ['proc', 0o555], ['tmp', 0o1777], ['root', 0o700]]));
  });

  it('turns hidden paths into whiteouts of the layer holding them, ignoring paths no sandbox sees', () => {
    const plan = planHostBase(entries, ['/etc/shadow', '/var/lib/postgresql', '/etcetera/x', '/home/user', '/etc']);

    expect(Object.fromEntries(plan.layers.map((layer) => [layer.name, layer.whiteouts]))).toEqual({
      usr: [],
      etc: ['shadow'],
      var: ['lib/postgresql'],
    });
  });
});

describe('SandboxDirs', () => {
  it('puts the root overlay first and each host directory overlay inside it', () => {
    const dirs = new SandboxDirs('/data/sandboxes/sbx-1');

    expect(dirs.overlays(['/base/additions', '/base/skeleton'], [{ name: 'usr', lowerDirs: ['/usr'] }])).toEqual([
      { target: '/data/sandboxes/sbx-1/root', lowerDirs: ['/base/additions', '/base/skeleton'], upperDir: '/data/sandboxes/sbx-1/upper/root', workDir: '/data/sandboxes/sbx-1/work/root' },
      { target: '/data/sandboxes/sbx-1/root/usr', lowerDirs: ['/usr'], upperDir: '/data/sandboxes/sbx-1/upper/usr', workDir: '/data/sandboxes/sbx-1/work/usr' },
    ]);
  });
});

describe('sandboxFstab', () => {
  const dirs = new SandboxDirs('/data/sandboxes/sbx-1');

  it('mounts the overlays in order, then a read-only /proc', () => {
    const fstab = sandboxFstab(dirs.overlays(['/cache/root', '/base/skeleton'], [{ name: 'etc', lowerDirs: ['/base/masks/etc', '/etc'] }]), dirs.root);

    expect(fstab.split('\n')).toEqual([
      'overlay /data/sandboxes/sbx-1/root overlay lowerdir=/cache/root:/base/skeleton,upperdir=/data/sandboxes/sbx-1/upper/root,workdir=/data/sandboxes/sbx-1/work/root 0 0',
      'overlay /data/sandboxes/sbx-1/root/etc overlay lowerdir=/base/masks/etc:/etc,upperdir=/data/sandboxes/sbx-1/upper/etc,workdir=/data/sandboxes/sbx-1/work/etc 0 0',
      'proc /data/sandboxes/sbx-1/root/proc proc ro,nosuid,nodev,noexec 0 0',
      '',
    ]);
  });

  it.each(['/images/a,b', '/images/a:b', '/images/a b'])('refuses a layer path that would break the mount options: %s', (path) => {
    expect(() => sandboxFstab(dirs.overlays([path], []), dirs.root)).toThrow('not usable in an overlay mount');
  });
});
