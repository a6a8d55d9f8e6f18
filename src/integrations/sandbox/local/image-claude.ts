import { constants } from 'node:fs';
import { access, chmod, copyFile, realpath } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { buildOnce, fileIdentity, identityHash, makeDir, placeClaude } from './host-base';
import { detectImageLibc, type ImageLibc, libcLoaders, resolveInImage } from './image-libc';
import { CLAUDE_DIR_IN_SANDBOX } from './sandbox-commands';

/**
 * What the CLI's glibc build loads besides its loader (its DT_NEEDED entries, `readelf -d`): all
 * of them glibc's own libraries, so the host's copies go with the host's loader.
 */
const GLIBC_LIBRARIES = ['libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1'];

export interface ImageClaudeOptions {
  /** Where the layers are built (beside the host view's base). */
  baseDir: string;
  /** The musl build of the CLI; the additions above every root hold the host's (glibc) build. */
  claudeBinMusl: string;
}

/** How the Claude CLI runs in an image: the layers to stack above the image's and the additions. */
export interface ImageClaude {
  libc: ImageLibc;
  lowerDirs: string[];
  /** Why the CLI will not run in the image, when it will not. */
  problem?: string;
}

/**
 * Makes the CLI at CLAUDE_DIR_IN_SANDBOX run in the image made of `imageLayers` (highest first):
 * a glibc image runs the additions' glibc build as it is; a musl image (alpine) gets the musl
 * build over it; an image with no libc at all (static programs only) gets the host's glibc
 * loader and libraries where that build looks for them, as the image's own symlinks lead there.
 * Each layer is built once per content under `baseDir` and shared by the sandboxes using it.
 */
export async function prepareImageClaude(imageLayers: string[], options: ImageClaudeOptions): Promise<ImageClaude> {
  const loaders = libcLoaders();
  const libc = await detectImageLibc(imageLayers, loaders);
  if (libc === 'glibc') return { libc, lowerDirs: [] };
  if (libc === 'musl') {
    const layer = await muslClaudeLayer(options);
    if (layer) return { libc, lowerDirs: [layer] };
    return { libc, lowerDirs: [], problem: `the Claude CLI's musl build is not an executable at ${options.claudeBinMusl} (npm run build fetches it; or set CLAUDE_BIN_MUSL)` };
  }
  const layer = await glibcLoaderLayer(imageLayers, options.baseDir, loaders.glibc);
  if (layer) return { libc, lowerDirs: [layer] };
  return { libc, lowerDirs: [], problem: `the image's own symlinks leave no place for the glibc loader ${loaders.glibc}` };
}

async function muslClaudeLayer({ baseDir, claudeBinMusl }: ImageClaudeOptions): Promise<string | undefined> {
  const binary = await realpath(claudeBinMusl).catch(() => undefined);
  if (!binary || !(await access(binary, constants.X_OK).then(() => true, () => false))) return undefined;
  const dir = join(baseDir, `claude-musl-${identityHash({ binary: await fileIdentity(binary) })}`);
  await buildOnce(dir, async (partial) => {
    await makeDirs(partial, CLAUDE_DIR_IN_SANDBOX.split('/').filter(Boolean).map((_, depth, names) => [`/${names.slice(0, depth + 1).join('/')}`, 0o755]));
    await placeClaude(binary, join(partial, CLAUDE_DIR_IN_SANDBOX, 'claude'));
  });
  return dir;
}

/**
 * The host's glibc loader at the build's PT_INTERP path and glibc's libraries in the directory
 * the host keeps them in (the loader's own, one of its built-in search paths): placed where the
 * image's symlinks lead, in directories with the modes the image gives them.
 */
async function glibcLoaderLayer(imageLayers: string[], baseDir: string, loaderPath: string): Promise<string | undefined> {
  const hostLoader = await realpath(loaderPath);
  const hostLibDir = dirname(hostLoader);
  const loaderDir = await resolveInImage(imageLayers, dirname(loaderPath));
  const libDir = await resolveInImage(imageLayers, hostLibDir);
  if (!loaderDir || !libDir) return undefined;
  const files: Array<[string, string]> = [
    [hostLoader, join(loaderDir.path, basename(loaderPath))],
    ...(await Promise.all(GLIBC_LIBRARIES.map(async (name): Promise<[string, string]> => [await realpath(join(hostLibDir, name)), join(libDir.path, name)]))),
  ];
  const dirs = await plannedDirs(imageLayers, [loaderDir.path, libDir.path]);
  const identity = { dirs, files: await Promise.all(files.map(async ([source, target]) => ({ target, source: await fileIdentity(source) }))) };
  const dir = join(baseDir, `glibc-loader-${identityHash(identity)}`);
  await buildOnce(dir, async (partial) => {
    await makeDirs(partial, dirs);
    for (const [source, target] of files) {
      await copyFile(source, join(partial, target));
      await chmod(join(partial, target), 0o755);
    }
  });
  return dir;
}

/** Every directory leading to `paths` (parents first), with the image's mode where the image has it, else 0755. */
async function plannedDirs(imageLayers: string[], paths: string[]): Promise<Array<[string, number]>> {
  const prefixes = new Set(paths.flatMap((path) => path.split('/').filter(Boolean).map((_, depth, names) => `/${names.slice(0, depth + 1).join('/')}`)));
  const planned: Array<[string, number]> = [];
  for (const prefix of [...prefixes].sort()) {
    const stats = (await resolveInImage(imageLayers, prefix))?.stats;
    planned.push([prefix, stats?.isDirectory() ? stats.mode & 0o7777 : 0o755]);
  }
  return planned;
}

async function makeDirs(root: string, dirs: Array<[string, number]>): Promise<void> {
  for (const [path, mode] of dirs) await makeDir(join(root, path), mode);
}
