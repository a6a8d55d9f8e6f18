import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';

/** Where system binaries are looked up; the service's own PATH is never consulted. */
const SYSTEM_BIN_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** Host programs the local engine runs, as absolute paths. */
export interface HostTools {
  bwrap: string;
  unshare: string;
  nsenter: string;
  mount: string;
  mknod: string;
  cp: string;
  sh: string;
}

/** What to install when a tool is missing. */
const PACKAGE_OF: Record<keyof HostTools, string> = {
  bwrap: 'bubblewrap',
  unshare: 'util-linux',
  nsenter: 'util-linux',
  mount: 'mount',
  mknod: 'coreutils',
  cp: 'coreutils',
  sh: 'dash',
};

/** Finds every tool; `missing` names the ones not found together with the Debian package providing them. */
export function locateHostTools(bwrapBin: string): { tools: Partial<HostTools>; missing: Array<{ tool: keyof HostTools; pkg: string }> } {
  const names: HostTools = { bwrap: bwrapBin, unshare: 'unshare', nsenter: 'nsenter', mount: 'mount', mknod: 'mknod', cp: 'cp', sh: 'sh' };
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
