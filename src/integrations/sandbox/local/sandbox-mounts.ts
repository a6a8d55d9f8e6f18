import { join } from 'node:path';
import { STAGED_ROOT } from './sandbox-commands';

export interface OverlayMount {
  target: string;
  /** Highest layer first, as overlayfs lists them. */
  lowerDirs: string[];
  upperDir: string;
  workDir: string;
}

export const ROOT_LAYER = 'root';

/** Per-sandbox directories: the merged root, an upper and a work directory per overlay, idmapped layers. */
export class SandboxDirs {
  constructor(readonly base: string) {}

  /** Where the launcher mounts the merged root, in its own mount namespace. */
  get root(): string {
    return STAGED_ROOT;
  }
  get fstab(): string {
    return join(this.base, 'fstab');
  }
  get stateFile(): string {
    return join(this.base, 'state.json');
  }
  /** Where the supervisor records how the sandbox's launcher ended (a KeptExit). */
  get exitFile(): string {
    return join(this.base, 'exit.json');
  }
  get natExitFile(): string {
    return join(this.base, 'nat-exit.json');
  }
  /** The sandbox's writable layer: its upper and work directories, on a filesystem of the disk limit's size. */
  get writable(): string {
    return join(this.base, 'rw');
  }
  get writableImage(): string {
    return join(this.base, 'rw.ext4');
  }
  upper(layer: string): string {
    return join(this.writable, 'upper', layer);
  }
  work(layer: string): string {
    return join(this.writable, 'work', layer);
  }
  /** Mount point of the n-th host-owned lower layer, idmapped into the sandbox's id range. */
  idmapped(index: number): string {
    return join(this.base, 'lower', String(index));
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

/** Characters that would break overlayfs options (`,` `:`) or fstab fields (whitespace, `\`). */
const UNSAFE_MOUNT_PATH = /[\s,:\\]/;

export function isMountSafePath(path: string): boolean {
  return !UNSAFE_MOUNT_PATH.test(path);
}

/**
 * An fstab for `mount -a -T`: the overlays in order, nosuid and nodev (a setuid file or device
 * node the sandbox plants gives nothing, inside or out). bwrap mounts the sandbox's own /proc.
 */
export function sandboxFstab(mounts: OverlayMount[]): string {
  return mounts
    .map((mount) => {
      const paths = [mount.target, mount.upperDir, mount.workDir, ...mount.lowerDirs];
      const unsafe = paths.find((path) => !isMountSafePath(path));
      if (unsafe !== undefined) throw new Error(`path not usable in an overlay mount: ${unsafe}`);
      return `overlay ${mount.target} overlay nosuid,nodev,lowerdir=${mount.lowerDirs.join(':')},upperdir=${mount.upperDir},workdir=${mount.workDir} 0 0\n`;
    })
    .join('');
}
