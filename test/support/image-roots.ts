import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * Root filesystems for IMAGES_DIR (`image_base: "<name>"`), built without the internet from what
 * scripts/test-prerequisites.sh installs: Debian's busybox-static (a shell and coreutils that need
 * no libc) and musl, and the host's glibc.
 *
 * - `musl`: alpine's layout: busybox's applets, musl's loader /lib/ld-musl-x86_64.so.1 (libc in one file).
 * - `glibc`: Debian's layout: merged /usr (/bin, /lib, /lib64 symlinks into it), glibc's libraries,
 *   the loader reached through an absolute symlink (as on Debian), busybox's applets.
 * - `static`: busybox alone, no libc at all.
 *
 * Built once per test process into a temp directory (`dir`, to pass as IMAGES_DIR); `remove()` deletes it.
 */
export interface ImageRoots {
  dir: string;
  remove(): void;
}

export type ImageRootName = 'musl' | 'glibc' | 'static';

const BUSYBOX = '/bin/busybox';
const MUSL_LOADER = '/lib/ld-musl-x86_64.so.1';
const GLIBC_DIR = '/usr/lib/x86_64-linux-gnu';
const GLIBC_FILES = ['ld-linux-x86-64.so.2', 'libc.so.6', 'libm.so.6', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1', 'libresolv.so.2', 'libnss_files.so.2', 'libnss_dns.so.2'];

let built: ImageRoots | undefined;

export function imageRoots(): ImageRoots {
  if (built) return built;
  for (const [file, pkg] of [[BUSYBOX, 'busybox-static'], [MUSL_LOADER, 'musl'], [join(GLIBC_DIR, 'libc.so.6'), 'libc6']]) {
    if (!existsSync(file)) throw new Error(`${file} is missing: apt-get install ${pkg} (scripts/test-prerequisites.sh)`);
  }
  assertStatic(BUSYBOX);
  const dir = mkdtempSync(join(tmpdir(), 'mss-image-roots-'));
  buildMusl(join(dir, 'musl'));
  buildGlibc(join(dir, 'glibc'));
  buildStatic(join(dir, 'static'));
  built = {
    dir,
    remove: () => {
      rmSync(dir, { recursive: true, force: true });
      built = undefined;
    },
  };
  return built;
}

/** The images' shell must not need a libc: Debian's plain `busybox` package is dynamically linked. */
function assertStatic(binary: string): void {
  const output = execFileSync(binary, ['sh', '-c', 'true'], { encoding: 'utf8' });
  if (output !== '') throw new Error(`${binary} did not run`);
  let linked = '';
  try {
    linked = execFileSync('ldd', [binary], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return; // "not a dynamic executable"
  }
  if (linked.includes('=>')) throw new Error(`${binary} is dynamically linked: apt-get install busybox-static`);
}

function buildMusl(root: string): void {
  skeleton(root);
  installBusybox(root);
  place(realpathSync(MUSL_LOADER), join(root, MUSL_LOADER));
  symlinkSync('ld-musl-x86_64.so.1', join(root, 'lib/libc.musl-x86_64.so.1'));
}

function buildGlibc(root: string): void {
  mkdirSync(join(root, 'usr/bin'), { recursive: true });
  mkdirSync(join(root, 'usr/sbin'), { recursive: true });
  mkdirSync(join(root, 'usr/lib64'), { recursive: true });
  for (const name of ['bin', 'sbin', 'lib', 'lib64']) symlinkSync(`usr/${name}`, join(root, name));
  skeleton(root);
  for (const file of GLIBC_FILES) place(realpathSync(join(GLIBC_DIR, file)), join(root, GLIBC_DIR, file));
  // Absolute, as Debian has it: resolved against the host, it would find the host's loader.
  symlinkSync(`${GLIBC_DIR}/ld-linux-x86-64.so.2`, join(root, 'usr/lib64/ld-linux-x86-64.so.2'));
  installBusybox(root);
}

function buildStatic(root: string): void {
  skeleton(root);
  installBusybox(root);
}

/** The directories and accounts every image has. */
function skeleton(root: string): void {
  for (const [path, mode] of [['bin', 0o755], ['etc', 0o755], ['root', 0o700], ['tmp', 0o1777], ['proc', 0o555], ['dev', 0o755]] as const) {
    mkdirSync(join(root, path), { recursive: true });
    chmodSync(join(root, path), mode);
  }
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\n');
}

/** busybox at /bin/busybox and each applet at the path busybox names for it (`--list-full`), as alpine installs it. */
function installBusybox(root: string): void {
  place(BUSYBOX, join(root, 'bin/busybox'));
  for (const applet of execFileSync(BUSYBOX, ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
    const link = join(root, applet);
    if (existsSync(link) || applet === 'bin/busybox') continue;
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync('/bin/busybox', link);
  }
}

function place(source: string, target: string): void {
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(source, target);
  chmodSync(target, 0o755);
}
