import { open, readFile, rmdir } from 'node:fs/promises';
import { ProviderFailureError } from '../sandbox-provider.errors';
import { type IdRange, VOLUME_MOUNT_OPTIONS } from './sandbox-commands';
import type { SandboxSpawner } from './sandbox-spawner';

const MIB = 1024 * 1024;
const OUTPUT_TAIL_CHARS = 2000;

/**
 * Disk limits on a host whatever its filesystem: a sandbox's writable layer and each volume are
 * ext4 filesystems in sparse image files of the limit's size, loop-mounted. A write past the limit
 * fails inside with ENOSPC and never reaches the host's free space; space freed inside is given
 * back to the host (discard punches holes in the image).
 */
export class SandboxDisks {
  constructor(
    private readonly spawner: SandboxSpawner,
    private readonly tools: { mkfs: string; mount: string; umount: string },
    readonly limitBytes: number,
    private readonly ids: IdRange,
  ) {}

  /**
   * The image of a sandbox's writable layer, holding `contentDir` (its upper and work directories,
   * owners and modes as they are). No journal: the layer dies with the sandbox. No blocks reserved
   * for online resizing (they make mkfs ten times slower and 4 MB larger).
   */
  async createLayerImage(image: string, contentDir: string): Promise<void> {
    await this.makeImage(image, ['-O', '^has_journal,^resize_inode', '-d', contentDir]);
  }

  /** A volume's image, its root owned by the sandbox's root; journaled, as volumes outlive sandboxes. */
  async createVolumeImage(image: string): Promise<void> {
    await this.makeImage(image, ['-O', '^resize_inode', '-E', `root_owner=${this.ids.base}:${this.ids.base},lazy_itable_init=1,lazy_journal_init=1,nodiscard`]);
  }

  /** Mounts a volume image on its directory in the service's mount namespace, unless it already is. */
  async mountVolume(image: string, dir: string): Promise<void> {
    if (await isMountPoint(dir)) return;
    await this.run([this.tools.mount, '-o', VOLUME_MOUNT_OPTIONS, image, dir]);
    await rmdir(`${dir}/lost+found`).catch(() => undefined); // mkfs's, not the user's
  }

  async unmount(dir: string): Promise<void> {
    // lazy: launchers still starting may hold it; the filesystem goes once the last user does
    if (await isMountPoint(dir)) await this.run([this.tools.umount, '--lazy', dir]);
  }

  /** The fstab line mounting a writable layer's image (on its content directory) in the launcher. */
  layerFstabLine(image: string, dir: string): string {
    return `${image} ${dir} ext4 ${VOLUME_MOUNT_OPTIONS} 0 0\n`;
  }

  private async makeImage(image: string, options: string[]): Promise<void> {
    const file = await open(image, 'w');
    try {
      await file.truncate(this.limitBytes); // sparse: costs the host only what is written
    } finally {
      await file.close();
    }
    await this.run([this.tools.mkfs, '-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,nodiscard', ...options, image]);
  }

  /** Runs a host tool through the spawner (a spawn from the big service process blocks its event loop). */
  private async run(argv: string[]): Promise<void> {
    const child = await this.spawner.spawn(argv[0], argv.slice(1), { stdioCount: 3 });
    child.ref();
    let output = '';
    const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-OUTPUT_TAIL_CHARS));
    child.stdio[1].on('data', keep);
    child.stdio[2].on('data', keep);
    child.stdio[0].end();
    const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode: number | null) => resolve(exitCode)));
    if (code !== 0) throw new ProviderFailureError('sandbox', `${argv[0]} failed (${code}): ${output.trim()}`);
  }
}

export function megabytes(mb: number): number {
  return mb * MIB;
}

/** Whether dir is the mount point of a mount in this process's mount namespace. */
export async function isMountPoint(dir: string): Promise<boolean> {
  return (await mountSource(dir)) !== undefined;
}

/** The source (e.g. /dev/loop3) of the mount on dir, the last one mounted there. */
export async function mountSource(dir: string): Promise<string | undefined> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const line = mountinfo
    .split('\n')
    .filter((entry) => unescapeMountPath(entry.split(' ')[4] ?? '') === dir)
    .pop();
  if (line === undefined) return undefined;
  const afterSeparator = line.split(' - ')[1]?.split(' ');
  return afterSeparator?.[1] ? unescapeMountPath(afterSeparator[1]) : '';
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_match, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
