import { join, relative, sep } from 'node:path';

/** Host top-level entries a host-view sandbox sees: directories as read-only lower layers, symlinks as they are. */
export const HOST_SYSTEM_ENTRIES = ['usr', 'bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32', 'etc', 'var', 'opt'];

/** Empty top-level directories of the sandbox root, writable through its overlay. */
const SKELETON_DIRS: Array<[path: string, mode: number]> = [
  ['proc', 0o555],
  ['dev', 0o755],
  ['tmp', 0o1777],
  ['root', 0o700],
  ['home', 0o755],
  ['run', 0o755],
  ['run/lock', 0o1777],
  ['mnt', 0o755],
  ['srv', 0o755],
];

/**
 * Host paths inside the shown directories that a sandbox must not read: credentials, host keys and
 * the state of databases and other services. Hidden by overlay whiteouts; a sandbox may create its own.
 */
export const HIDDEN_HOST_PATHS = [
  '/etc/shadow',
  '/etc/shadow-',
  '/etc/gshadow',
  '/etc/gshadow-',
  '/etc/ssl/private',
  '/etc/postgresql',
  '/etc/mysql',
  '/etc/redis',
  '/etc/security/opasswd',
  '/var/lib/postgresql',
  '/var/lib/mysql',
  '/var/lib/redis',
  '/var/lib/mongodb',
  '/var/lib/rabbitmq',
  '/var/lib/docker',
  '/var/lib/containerd',
  '/var/lib/private',
  '/var/log/journal',
  '/var/log/postgresql',
  '/var/log/mysql',
  '/var/log/auth.log',
  '/var/log/syslog',
  '/var/mail',
  '/var/spool/cron',
  '/var/backups',
];

/** A top-level entry of the host as seen by lstat. */
export interface HostEntry {
  name: string;
  kind: 'directory' | 'symlink';
  mode: number;
  /** For symlinks: the link text. */
  target?: string;
}

/** What the shared base of host-view sandboxes is made of; its JSON names the directory it is built in. */
export interface HostBasePlan {
  skeletonDirs: Array<[path: string, mode: number]>;
  skeletonSymlinks: Array<[path: string, target: string]>;
  /** Host directories overlaid read-only, with the paths (relative to them) hidden by whiteouts. */
  layers: Array<{ name: string; hostDir: string; whiteouts: string[] }>;
}

/** Plans the host view from the host's top-level entries and the host paths that must stay hidden. */
export function planHostBase(entries: HostEntry[], hiddenPaths: string[]): HostBasePlan {
  const directories = entries.filter((entry) => entry.kind === 'directory');
  const layers = directories.map((entry) => {
    const hostDir = `/${entry.name}`;
    const whiteouts = hiddenPaths.flatMap((hidden) => {
      const inside = relative(hostDir, hidden);
      return inside !== '' && !inside.startsWith('..') && !inside.startsWith(sep) ? [inside] : [];
    });
    return { name: entry.name, hostDir, whiteouts: [...new Set(whiteouts)].sort() };
  });
  return {
    skeletonDirs: [...directories.map((entry): [string, number] => [entry.name, entry.mode & 0o7777]), ...SKELETON_DIRS],
    skeletonSymlinks: entries.filter((entry) => entry.kind === 'symlink').map((entry) => [entry.name, entry.target!]),
    layers,
  };
}

export interface OverlayMount {
  target: string;
  /** Highest layer first, as overlayfs lists them. */
  lowerDirs: string[];
  upperDir: string;
  workDir: string;
}

/** Per-sandbox directories: the merged root, and an upper and a work directory per overlay. */
export class SandboxDirs {
  constructor(readonly base: string) {}

  get root(): string {
    return join(this.base, 'root');
  }
  get fstab(): string {
    return join(this.base, 'fstab');
  }
  get stateFile(): string {
    return join(this.base, 'state.json');
  }
  upper(layer: string): string {
    return join(this.base, 'upper', layer);
  }
  work(layer: string): string {
    return join(this.base, 'work', layer);
  }

  /** The root overlay first (later mounts land inside it), then one overlay per shown host directory. */
  overlays(rootLowerDirs: string[], subLayers: Array<{ name: string; lowerDirs: string[] }>): OverlayMount[] {
    return [
      { target: this.root, lowerDirs: rootLowerDirs, upperDir: this.upper(ROOT_LAYER), workDir: this.work(ROOT_LAYER) },
      ...subLayers.map((layer) => ({
        target: join(this.root, layer.name),
        lowerDirs: layer.lowerDirs,
        upperDir: this.upper(layer.name),
        workDir: this.work(layer.name),
      })),
    ];
  }
}

export const ROOT_LAYER = 'root';

/** Characters that would break overlayfs options (`,` `:`) or fstab fields (whitespace, `\`). */
const UNSAFE_MOUNT_PATH = /[\s,:\\]/;

export function isMountSafePath(path: string): boolean {
  return !UNSAFE_MOUNT_PATH.test(path);
}

/**
 * An fstab for `mount -a -T`: the overlays in order, then the sandbox's /proc read-only (its
 * processes are root of the host by uid, and /proc/sys checks only that).
 */
export function sandboxFstab(mounts: OverlayMount[], rootDir: string): string {
  const overlays = mounts.map((mount) => {
    const paths = [mount.target, mount.upperDir, mount.workDir, ...mount.lowerDirs];
    const unsafe = paths.find((path) => !isMountSafePath(path));
    if (unsafe !== undefined) throw new Error(`path not usable in an overlay mount: ${unsafe}`);
    return `overlay ${mount.target} overlay lowerdir=${mount.lowerDirs.join(':')},upperdir=${mount.upperDir},workdir=${mount.workDir} 0 0\n`;
  });
  return `${overlays.join('')}proc ${join(rootDir, 'proc')} proc ro,nosuid,nodev,noexec 0 0\n`;
}
