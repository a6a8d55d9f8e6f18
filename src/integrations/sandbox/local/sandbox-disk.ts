import { execFile } from 'node:child_process';
import { open, readFile, rmdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import { ProviderFailureError } from '../sandbox-provider.errors';
import { type IdRange, VOLUME_MOUNT_OPTIONS } from './sandbox-commands';

const MIB = 1024 * 1024;
const OUTPUT_TAIL_CHARS = 2000;
const TOOL_DEADLINE_MS = 60_000;
const runFile = promisify(execFile);

/**
 * Disk limits on a host whatever its filesystem: a sandbox's writable layer and each volume are
 * ext4 filesystems in sparse image files of the limit's size, loop-mounted. A write past the limit
 * fails inside with ENOSPC and never reaches the host's free space; space freed inside is given
 * back to the host (discard punches holes in the image).
 */
export class SandboxDisks {
  constructor(
    private readonly tools: { mkfs: string; mount: string; umount: string },
    readonly limitBytes: number,
    private readonly ids: IdRange,
  ) {}

  /**
   * The sparse file of a sandbox's writable layer and the command (run by its launcher) that
   * makes it a filesystem holding `contentDir` (its upper and work directories, owners and modes
   * as they are). No journal: the layer dies with the sandbox. No blocks reserved for online
   * resizing (they make mkfs ten times slower and 4 MB larger).
   */
  async createLayerImage(image: string, contentDir: string): Promise<string[]> {
    await this.createSparseFile(image);
    return this.mkfsArgv(image, '^has_journal,^resize_inode', [], ['-d', contentDir]);
  }

  /** A volume's image, its root owned by the sandbox's root; journaled, as volumes outlive sandboxes. */
  async createVolumeImage(image: string): Promise<void> {
    await this.createSparseFile(image);
    await this.run(this.mkfsArgv(image, '^resize_inode', [`root_owner=${this.ids.base}:${this.ids.base}`, 'lazy_journal_init=1']));
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

  private async createSparseFile(image: string): Promise<void> {
    const file = await open(image, 'w');
    try {
      await file.truncate(this.limitBytes); // sparse: costs the host only what is written
    } finally {
      await file.close();
    }
  }

  /** mkfs.ext4 with no reserved blocks and nothing written ahead that the filesystem can write later. */
  private mkfsArgv(image: string, features: string, extendedOptions: string[], more: string[] = []): string[] {
    const extended = ['lazy_itable_init=1', 'nodiscard', ...extendedOptions].join(',');
    return [this.tools.mkfs, '-q', '-F', '-m', '0', '-O', features, '-E', extended, ...more, image];
  }

  /**
   * Runs a host tool (once per volume: mkfs, mount, umount) to its exit, within a deadline. Not
   * through the spawner: these are rare, and a process that exits at once can outrun its handover.
   */
  private async run(argv: string[]): Promise<void> {
    try {
      await runFile(argv[0], argv.slice(1), { timeout: TOOL_DEADLINE_MS, killSignal: 'SIGKILL', env: {} });
    } catch (error) {
      const failure = error as Error & { stderr?: string; code?: number | string };
      throw new ProviderFailureError('sandbox', `${argv[0]} failed (${failure.code ?? 'killed'}): ${(failure.stderr ?? failure.message).trim().slice(-OUTPUT_TAIL_CHARS)}`);
    }
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
