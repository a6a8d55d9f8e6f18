import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { DockerfileStep } from '../dockerfile';

const run = promisify(execFile);

/** Layers cached by an engine whose sandboxes saw files with other owners (before uid shifting) are never reused. */
const LAYER_FORMAT = 2;

/**
 * Identifies the layers that a base (by its content identity: a changed host view is another
 * base) and its Dockerfile lines produce for one account. Per account: a RUN line could leave a
 * process behind that changes the result while it is being cached.
 */
export function imageCacheKey(accountId: string, baseIdentity: string, steps: DockerfileStep[]): string {
  return createHash('sha256')
    .update(JSON.stringify({ format: LAYER_FORMAT, account: accountId, base: baseIdentity, steps: steps.map((step) => step.instruction) }))
    .digest('hex');
}

/**
 * Results of Dockerfile RUN steps: the overlay upper directories of the sandbox that ran them,
 * copied to `<dir>/<key>/<layer>` and used as extra read-only lower layers by later sandboxes.
 */
export class ImageCache {
  constructor(private readonly dir: string, private readonly cp: string) {}

  /** The cached layers directory, or null when these steps have not run yet. */
  async find(key: string): Promise<string | null> {
    const path = join(this.dir, key);
    return (await stat(path).catch(() => null))?.isDirectory() ? path : null;
  }

  /** Copies the upper directories (named after their layer); a concurrent store of the same key wins quietly. */
  async store(key: string, upperDirs: string[]): Promise<void> {
    const partial = join(this.dir, `.partial-${key}-${randomBytes(4).toString('hex')}`);
    await mkdir(partial, { recursive: true });
    try {
      // cp -a keeps owners, modes, xattrs and the whiteouts (0/0 character devices) of overlayfs.
      await run(this.cp, ['-a', '--', ...upperDirs, partial], { env: {} });
      await rename(partial, join(this.dir, key)).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
      });
    } finally {
      await rm(partial, { recursive: true, force: true });
    }
  }
}
