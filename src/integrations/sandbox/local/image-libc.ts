import { lstat, readlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';

/** Which C library an image's programs load: the Claude CLI has a build for each; `none` for static-only images. */
export type ImageLibc = 'glibc' | 'musl' | 'none';

/** The program interpreter (PT_INTERP) of each build of the CLI: an image that has it can run that build. */
export interface LibcLoaders {
  glibc: string;
  musl: string;
}

const LOADERS: Partial<Record<NodeJS.Architecture, LibcLoaders>> = {
  x64: { glibc: '/lib64/ld-linux-x86-64.so.2', musl: '/lib/ld-musl-x86_64.so.1' },
  arm64: { glibc: '/lib/ld-linux-aarch64.so.1', musl: '/lib/ld-musl-aarch64.so.1' },
};

/** Symbolic links followed in one lookup before giving up, as the kernel's limit. */
const MAX_LINKS = 40;

export function libcLoaders(arch: NodeJS.Architecture = process.arch): LibcLoaders {
  const loaders = LOADERS[arch];
  if (!loaders) throw new Error(`no Claude CLI builds for ${arch}`);
  return loaders;
}

/**
 * The libc of the image made of `layers` (highest first). musl before glibc: an alpine image with
 * gcompat has a glibc loader name too, but only a shim behind it; a Debian image with the musl
 * package runs the musl build as well (musl is a single self-contained file).
 */
export async function detectImageLibc(layers: string[], loaders: LibcLoaders = libcLoaders()): Promise<ImageLibc> {
  if (await isFileInImage(layers, loaders.musl)) return 'musl';
  if (await isFileInImage(layers, loaders.glibc)) return 'glibc';
  return 'none';
}

async function isFileInImage(layers: string[], path: string): Promise<boolean> {
  return (await resolveInImage(layers, path))?.stats?.isFile() ?? false;
}

/** A path as the image's own symlinks lead to it; `stats` is absent when nothing is there (yet). */
export interface ImagePath {
  path: string;
  stats?: Stats;
}

/**
 * Where `path` leads inside the image made of `layers` (highest first, as overlayfs stacks them):
 * symbolic links are followed inside the image (an absolute target starts again at the image's
 * root, `..` stops there), never into the host. When a component is missing, the rest is appended
 * as it is. Null for a loop of links or a component that is not a directory.
 */
export async function resolveInImage(layers: string[], path: string): Promise<ImagePath | null> {
  let pending = path.split('/').filter(Boolean);
  let resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const name = pending.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      resolved.pop();
      continue;
    }
    const found = await lookup(layers, `/${[...resolved, name].join('/')}`);
    if (!found) return { path: `/${[...resolved, name, ...pending].join('/')}` };
    if (found.stats.isSymbolicLink()) {
      if (++links > MAX_LINKS) return null;
      const target = await readlink(found.file);
      if (target.startsWith('/')) resolved = [];
      pending = [...target.split('/').filter(Boolean), ...pending];
      continue;
    }
    resolved.push(name);
    if (pending.length === 0) return { path: `/${resolved.join('/')}`, stats: found.stats };
    if (!found.stats.isDirectory()) return null;
  }
  return { path: `/${resolved.join('/')}`, stats: (await lookup(layers, '/'))?.stats };
}

/** The entry at `path` of the highest layer that has one; a whiteout (a 0/0 character device) hides those below. */
async function lookup(layers: string[], path: string): Promise<{ file: string; stats: Stats } | null> {
  for (const layer of layers) {
    const file = join(layer, path);
    const stats = await lstat(file).catch(() => null);
    if (!stats) continue;
    if (stats.isCharacterDevice() && stats.rdev === 0) return null;
    return { file, stats };
  }
  return null;
}
