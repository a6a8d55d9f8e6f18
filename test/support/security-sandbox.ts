/**
 * Shared helpers of the hostile-tenant suite (test/security/): a tenant that only has the public
 * API and a root shell inside its sandbox, and a host-side observer that checks what that tenant
 * managed to do to the host. Nothing here reaches into the service's internals.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { api, call } from './http';
import { createMember, startTestApp, TestApp, TestAppOptions } from './test-app';

const run = promisify(execFile);
export const PROJECT_ROOT = resolve(__dirname, '..', '..');
/** Where the suite's C programs live; each is compiled with `gcc -static` by the test that uses it. */
const PROGRAMS_DIR = join(PROJECT_ROOT, 'test', 'security', 'programs');
/** Host uids the hardened engine maps sandbox uids 0..65535 to (SANDBOX_UID_BASE, default 100000). */
export const SANDBOX_UID_BASE = 100_000;
export const SANDBOX_UID_END = SANDBOX_UID_BASE + 65_535;

export interface ExecResult {
  exit_code: number;
  stdout: string;
  stderr: string;
  timed_out: boolean;
  truncated: boolean;
  duration_ms: number;
}

export interface Tenant {
  app: TestApp;
  token: string;
  user: ReturnType<typeof api>;
  /** POST /api/sandboxes; fails the test unless 201. The volume is at /workspace unless told otherwise. */
  create(body?: Record<string, unknown>): Promise<string>;
  /** POST /api/sandboxes/:id/exec; fails the test unless the API answers 200. */
  exec(id: string, command: string[], options?: { timeoutSeconds?: number; workdir?: string }): Promise<ExecResult>;
  /** `sh -c script` inside the sandbox. */
  sh(id: string, script: string, timeoutSeconds?: number): Promise<ExecResult>;
  /** PUT /api/sandboxes/:id/files/content?path= (raw body onto the volume). */
  upload(id: string, path: string, body: Buffer | string): Promise<void>;
  /** Uploads a file through the files API and installs it at `target` inside the sandbox, mode 0755. */
  install(id: string, target: string, body: Buffer): Promise<void>;
  /** DELETE /api/sandboxes/:id. */
  remove(id: string): Promise<void>;
}

/** Boots the real app and signs in a member of a new account: the attacker. */
export async function startTenant(options: TestAppOptions = {}): Promise<Tenant> {
  const app = await startTestApp(options);
  const { token } = await createMember(app);
  const user = api(app.url, token);
  const tenant: Tenant = {
    app,
    token,
    user,
    async create(body = {}) {
      const response = await user.post('/api/sandboxes', { volume_mount_path: '/workspace', ...body });
      if (response.status !== 201) throw new Error(`creating a sandbox failed: ${response.status} ${response.text}`);
      return response.body.data.sandbox_id as string;
    },
    async exec(id, command, { timeoutSeconds = 60, workdir = '/' } = {}) {
      const response = await user.post(`/api/sandboxes/${id}/exec`, { command, timeout_seconds: timeoutSeconds, workdir });
      if (response.status !== 200) throw new Error(`exec ${JSON.stringify(command)} failed: ${response.status} ${response.text}`);
      return response.body.data as ExecResult;
    },
    sh(id, script, timeoutSeconds) {
      return tenant.exec(id, ['sh', '-c', script], { timeoutSeconds });
    },
    async upload(id, path, body) {
      const response = await call(app.url, 'PUT', `/api/sandboxes/${id}/files/content?path=${encodeURIComponent(path)}`, {
        token,
        rawBody: body,
        headers: { 'content-type': 'application/octet-stream' },
      });
      if (response.status >= 300) throw new Error(`upload of ${path} failed: ${response.status} ${response.text}`);
    },
    async install(id, target, body) {
      const staged = `.upload-${randomBytes(4).toString('hex')}`;
      await tenant.upload(id, staged, body);
      const installed = await tenant.sh(id, `cp /workspace/${staged} ${target} && chmod 0755 ${target} && rm -f /workspace/${staged}`);
      if (installed.exit_code !== 0) throw new Error(`installing ${target} failed: ${installed.stderr}`);
    },
    async remove(id) {
      const response = await user.delete(`/api/sandboxes/${id}`);
      if (response.status !== 200) throw new Error(`deleting ${id} failed: ${response.status} ${response.text}`);
    },
  };
  return tenant;
}

const compiled = new Map<string, Buffer>();
/** Compiles test/security/programs/<name>.c statically on the host and returns the binary. */
export async function compileProgram(name: string): Promise<Buffer> {
  const cached = compiled.get(name);
  if (cached) return cached;
  const dir = mkdtempSync(join(tmpdir(), 'mss-security-cc-'));
  const output = join(dir, name);
  try {
    await run('gcc', ['-static', '-O2', '-Wall', '-o', output, join(PROGRAMS_DIR, `${name}.c`)]);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`gcc -static failed for ${name}.c (install gcc and the C library's static archive, libc6-dev): ${(error as Error).message}`);
  }
  const binary = readFileSync(output);
  rmSync(dir, { recursive: true, force: true });
  compiled.set(name, binary);
  return binary;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Host binaries that take part in entering a sandbox (and so could be exposed through
 * /proc/<pid>/exe of a process on its way in): the engine's tools, the shell, node, the Claude CLI
 * and whatever the project builds as native helpers.
 */
export function hostEntryBinaries(extra: string[] = []): string[] {
  const candidates = ['/usr/bin/nsenter', '/usr/bin/unshare', '/usr/bin/bwrap', '/usr/bin/setpriv', '/bin/sh', '/bin/bash', '/usr/bin/env', '/usr/bin/mount', process.execPath, ...extra];
  for (const dir of [join(PROJECT_ROOT, 'native'), join(PROJECT_ROOT, 'dist', 'native')]) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isFile()) candidates.push(path);
    }
  }
  return [...new Set(candidates.filter((path) => existsSync(path)).map((path) => realpathSync(path)))].sort();
}

export async function hashAll(paths: string[]): Promise<Record<string, string>> {
  const hashes: Record<string, string> = {};
  for (const path of paths) hashes[path] = existsSync(path) ? await sha256File(path) : 'missing';
  return hashes;
}

/** A process on the host: what /proc says about it. */
export interface HostProcess {
  pid: number;
  uids: number[];
  pidNs: string;
  argv: string[];
  cgroups: string[];
}

export function hostProcess(pid: number): HostProcess | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    if (/^State:\s+Z/m.test(status)) return undefined;
    const uids = (/^Uid:\s+(.*)$/m.exec(status)?.[1] ?? '').trim().split(/\s+/).map(Number);
    return {
      pid,
      uids,
      pidNs: readlinkSync(`/proc/${pid}/ns/pid`),
      argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((word) => word !== ''),
      cgroups: readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').filter(Boolean),
    };
  } catch {
    return undefined; // gone meanwhile
  }
}

export function hostProcesses(): HostProcess[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map((name) => hostProcess(Number(name)))
    .filter((entry): entry is HostProcess => entry !== undefined);
}

/** The cgroup v2 mount of the host (/sys/fs/cgroup/unified on hybrid hosts, /sys/fs/cgroup on pure v2 ones). */
export function hostCgroup2Mount(): string | undefined {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [before, after] = line.split(' - ');
    if (after?.startsWith('cgroup2 ')) return before.split(' ')[4];
  }
  return undefined;
}

/** Every cgroup hierarchy mounted on the host: its controllers (none for v2) and mount point. */
export function hostCgroupMounts(): Array<{ controllers: string[]; mountPoint: string }> {
  const known = new Set(readFileSync('/proc/cgroups', 'utf8').split('\n').filter((line) => line && !line.startsWith('#')).map((line) => line.split('\t')[0]));
  const mounts: Array<{ controllers: string[]; mountPoint: string }> = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [before, after] = line.split(' - ');
    if (!after) continue;
    const mountPoint = before.split(' ')[4];
    if (after.startsWith('cgroup2 ')) mounts.push({ controllers: [], mountPoint });
    else if (after.startsWith('cgroup ')) {
      const controllers = after.split(' ')[2].split(',').filter((option) => known.has(option) || option.startsWith('name='));
      mounts.push({ controllers, mountPoint });
    }
  }
  return mounts;
}

/** Host directories of the cgroups a host process belongs to (its non-root groups only). */
export function cgroupDirsOf(process: HostProcess): string[] {
  const dirs: string[] = [];
  const mounts = hostCgroupMounts();
  for (const line of process.cgroups) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!match || match[2] === '/') continue;
    const controllers = match[1] === '' ? [] : match[1].split(',');
    const mount = mounts.find((entry) => sameControllers(entry.controllers, controllers));
    if (mount) dirs.push(join(mount.mountPoint, match[2]));
  }
  return [...new Set(dirs)];
}

function sameControllers(a: string[], b: string[]): boolean {
  return [...a].sort().join(',') === [...b].sort().join(',');
}

/** Every directory below a cgroup mount (relative paths), to see groups appear or vanish. */
export function cgroupTree(mountPoint: string): string[] {
  const found: string[] = [];
  const walk = (relative: string) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(join(mountPoint, relative), { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (!entry.isDirectory()) continue;
      const path = relative ? `${relative}/${entry.name}` : entry.name;
      found.push(path);
      walk(path);
    }
  };
  walk('');
  return found.sort();
}

/**
 * A process the tenant leaves running in its sandbox under a unique name, found on the host: it
 * tells the observer which pid namespace and which cgroups are the sandbox's, whatever the engine
 * calls them.
 */
export interface SandboxMarker {
  name: string;
  hostPid: number;
  pidNs: string;
  cgroupDirs: string[];
}

export async function plantMarker(tenant: Tenant, id: string): Promise<SandboxMarker> {
  const name = `/tmp/mss-marker-${randomBytes(5).toString('hex')}`;
  const started = await tenant.sh(id, `cp /bin/sleep ${name} && { setsid ${name} 3600 </dev/null >/dev/null 2>&1 & } && echo planted`);
  if (started.stdout.trim() !== 'planted') throw new Error(`could not start the marker process: ${started.stderr}`);
  for (let attempt = 0; attempt < 50; attempt++) {
    const found = hostProcesses().find((process) => process.argv[0] === name);
    if (found) return { name, hostPid: found.pid, pidNs: found.pidNs, cgroupDirs: cgroupDirsOf(found) };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`the marker process ${name} is not visible on the host`);
}

/** Host processes of the sandbox: those in its pid namespace or in one of its cgroups. */
export function sandboxProcesses(marker: SandboxMarker): HostProcess[] {
  return hostProcesses().filter((process) => process.pidNs === marker.pidNs || cgroupDirsOf(process).some((dir) => marker.cgroupDirs.includes(dir)));
}

/** The sandbox's host processes still there after up to 5 s (a sandbox's processes die with it, not at once). */
export async function processesLeft(marker: SandboxMarker): Promise<HostProcess[]> {
  let left = sandboxProcesses(marker);
  for (let attempt = 0; attempt < 50 && left.length > 0; attempt++) {
    await sleep(100);
    left = sandboxProcesses(marker);
  }
  return left;
}

/** Bytes the tree at `path` occupies on its filesystem (allocated blocks, so sparse images count what they hold). */
export function allocatedBytes(path: string): number {
  return Number(execFileSync('du', ['-s', '-B1', '-x', path], { encoding: 'utf8' }).split('\t')[0]);
}

export const randomToken = (bytes = 12) => randomBytes(bytes).toString('hex');

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
