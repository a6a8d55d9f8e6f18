import { accessSync, constants, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { SandboxHelper } from './sandbox-commands';

/** Where system binaries are looked up; the service's own PATH is never consulted. */
const SYSTEM_BIN_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** Host programs the local engine runs, as absolute paths. */
export interface HostTools {
  bwrap: string;
  unshare: string;
  setpriv: string;
  mount: string;
  umount: string;
  mkfs: string;
  mknod: string;
  cp: string;
  sh: string;
  slirp4netns: string;
}

/** What to install when a tool is missing. */
const PACKAGE_OF: Record<keyof HostTools, string> = {
  bwrap: 'bubblewrap',
  unshare: 'util-linux',
  setpriv: 'util-linux',
  mount: 'mount',
  umount: 'mount',
  mkfs: 'e2fsprogs',
  mknod: 'coreutils',
  cp: 'coreutils',
  sh: 'dash',
  slirp4netns: 'slirp4netns',
};

/** Finds every tool; `missing` names the ones not found together with the Debian package providing them. */
export function locateHostTools(bwrapBin: string): { tools: Partial<HostTools>; missing: Array<{ tool: keyof HostTools; pkg: string }> } {
  const names: HostTools = { bwrap: bwrapBin, unshare: 'unshare', setpriv: 'setpriv', mount: 'mount', umount: 'umount', mkfs: 'mkfs.ext4', mknod: 'mknod', cp: 'cp', sh: 'sh', slirp4netns: 'slirp4netns' };
  const tools: Partial<HostTools> = {};
  const missing: Array<{ tool: keyof HostTools; pkg: string }> = [];
  for (const tool of Object.keys(names) as Array<keyof HostTools>) {
    const found = findExecutable(names[tool]);
    if (found) tools[tool] = found;
    else missing.push({ tool, pkg: PACKAGE_OF[tool] });
  }
  return { tools, missing };
}

export function findExecutable(name: string): string | undefined {
  const candidates = name.includes('/') ? [name] : SYSTEM_BIN_DIRS.map((dir) => join(dir, name));
  return candidates.find(isExecutable);
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The engine's helper, its seccomp filter and the egress filter loader, built by `npm run build` (scripts/build-native.sh)
 * into dist/native of the project; undefined when they have not been built.
 */
export function locateSandboxHelper(): SandboxHelper | undefined {
  const nativeDir = join(projectRoot(), 'dist', 'native');
  const helper = { binary: join(nativeDir, 'sandbox-helper'), seccompFilter: join(nativeDir, 'sandbox-seccomp.bpf'), egressFilter: join(nativeDir, 'egress-filter') };
  return isExecutable(helper.binary) && existsSync(helper.seccompFilter) && isExecutable(helper.egressFilter) ? helper : undefined;
}

/** The nearest directory above this file holding a package.json (from src/ or from dist/src/). */
function projectRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}
