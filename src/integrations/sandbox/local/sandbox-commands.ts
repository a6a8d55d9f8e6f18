import { ProviderInvalidError } from '../sandbox-provider.errors';
import type { HostTools } from './host-tools';

/** Where the Claude Code CLI appears inside every sandbox. */
export const CLAUDE_DIR_IN_SANDBOX = '/opt/claude-code/bin';
const SANDBOX_HOSTNAME = 'sandbox';
export const DEFAULT_SANDBOX_ENV: Readonly<Record<string, string>> = {
  PATH: `${CLAUDE_DIR_IN_SANDBOX}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
  HOME: '/root',
  LANG: 'C.UTF-8',
};
/** File descriptors of the sandbox's launcher: bwrap reports the init's pid on one and waits on the other. */
const INFO_FD = 3;
const USERNS_BLOCK_FD = 4;
const SECCOMP_FD = 5;
/**
 * bwrap runs as the sandbox's root uid (its first process must be mapped to create anything in the
 * sandbox's user namespace), which may not traverse the private DATA_DIR. So the launcher stages
 * what bwrap mounts on a tmpfs over /run of its own mount namespace (the host's /run is untouched):
 * the merged root, the volume and the init.
 */
const STAGE = '/run';
export const STAGED_ROOT = `${STAGE}/root`;
const STAGED_VOLUME = `${STAGE}/volume`;
const STAGED_INIT = `${STAGE}/init`;
/** Options of every mount of a volume's filesystem: the same in the service and in each launcher. */
const VOLUME_FILESYSTEM_OPTIONS = 'nosuid,nodev,noatime,discard';
export const VOLUME_MOUNT_OPTIONS = `loop,${VOLUME_FILESYSTEM_OPTIONS}`;
/** The sandbox's init (the engine's helper) prints this once the sandbox is set up, then lives until it is killed. */
export const READY_LINE = 'sandbox-ready';
/** Where the helper appears, read-only, inside every sandbox: bwrap starts it as the sandbox's pid 1. */
const INIT_IN_SANDBOX = '/run/sandbox-init';
/**
 * Docker's default capability set: enough for package managers (chown, setuid to service users),
 * never CAP_SYS_ADMIN, CAP_SYS_PTRACE or CAP_NET_ADMIN. The helper's `enter` keeps the same set.
 */
const SANDBOX_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function isValidEnvName(name: string): boolean {
  return ENV_NAME.test(name);
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

function joinProcs(procsFiles: string[]): string {
  return procsFiles.map((file) => `echo $$ > ${shellQuote(file)} && `).join('');
}

/** The host uid/gid range that sandbox ids 0… map to. */
export interface IdRange {
  base: number;
  count: number;
}

/** The engine's helper binary, the seccomp filter it exported for bwrap, and the egress filter loader. */
export interface SandboxHelper {
  binary: string;
  seccompFilter: string;
  egressFilter: string;
}

export interface LaunchOptions {
  tools: HostTools;
  helper: SandboxHelper;
  ids: IdRange;
  procsFiles: string[];
  /** Host-owned lower layers, each mounted idmapped (shifted into `ids`) on its target before the overlays. */
  idmappedLayers: Array<{ source: string; target: string }>;
  /** argv making the sandbox's writable layer (its filesystem image) before the fstab mounts it. */
  makeWritableLayer: string[];
  /** Mounts the overlays; the root overlay's target is STAGED_ROOT. */
  fstab: string;
}

/**
 * A volume's filesystem, which the launcher mounts itself (the service's mount of it may be
 * younger than the launcher's mount namespace): through the loop device the service's mount uses
 * (the same filesystem; the launcher checks the device still backs that image), or a plain
 * directory from before disk limits.
 */
export type VolumeSource = { kind: 'loop'; device: string; image: string } | { kind: 'directory'; path: string };

/** What a prepared launcher reads from stdin before it becomes the sandbox. */
export interface LaunchParameters {
  volume: VolumeSource;
  volumeMountPath: string;
}

/** `0 <base> <count>`: the line of a uid_map/gid_map, and the mapping of idmapped layers. */
export function idMapLine(ids: IdRange): string {
  return `0 ${ids.base} ${ids.count}\n`;
}

/**
 * The launcher's script. In new mount, pid and network namespaces still owned by the host (nothing
 * reaches the host's mount table; the sandbox has no capability over its network, which its NAT
 * sets up from outside) the launcher joins the sandbox's cgroups, mounts the host-owned layers
 * idmapped and the overlays on them, lets unprivileged processes bind ports below 1024 (as root in
 * a container may), waits for its parameters, then becomes bwrap, which puts the sandbox in user,
 * pid, cgroup, ipc and uts namespaces owned by a user namespace that maps the sandbox's ids into
 * `ids`: the overlays are locked there, and the sandbox's root is an unprivileged host uid with
 * Docker's capabilities inside its namespaces only.
 */
function launchScript(options: LaunchOptions): string {
  const { tools, helper, ids, idmappedLayers } = options;
  const mount = shellQuote(tools.mount);
  // idmapped layers, then STAGE (STAGED_ROOT, STAGED_VOLUME, STAGED_INIT) and a /proc of this pid namespace
  const stage = [helper.binary, 'stage', String(ids.base), String(ids.count), helper.binary, ...idmappedLayers.flatMap((layer) => [layer.source, layer.target])];
  return [
    `${joinProcs(options.procsFiles)}${stage.map(shellQuote).join(' ')} && ${options.makeWritableLayer.map(shellQuote).join(' ')} && ${mount} -a -T "$1" && echo 0 > /proc/sys/net/ipv4/ip_unprivileged_port_start || exit 125`,
    'bwrap=$2 && shift 2',
    'IFS= read -r kind && IFS= read -r volume && IFS= read -r image && IFS= read -r target || exit 125',
    `if [ "$kind" = loop ]; then IFS= read -r backing < "/sys/block/\${volume#/dev/}/loop/backing_file" && [ "$backing" = "$image" ] && ${mount} -o ${VOLUME_FILESYSTEM_OPTIONS} "$volume" ${STAGED_VOLUME}; ` +
      `else ${mount} --bind "$volume" ${STAGED_VOLUME}; fi || exit 125`,
    `exec ${shellQuote(tools.setpriv)} --reuid=${ids.base} --regid=${ids.base} --clear-groups -- "$bwrap" "$@" --bind ${STAGED_VOLUME} "$target" --chdir / -- ${INIT_IN_SANDBOX} init ${SECCOMP_FD}<${shellQuote(helper.seccompFilter)}`,
  ].join('\n');
}

/** argv of a launcher; it mounts right away, then waits for `launchParametersText` on stdin. */
export function launchArgv(options: LaunchOptions): string[] {
  const { tools } = options;
  return [
    tools.unshare,
    '--mount',
    '--propagation',
    'private',
    '--pid',
    '--net',
    '--fork',
    '--kill-child=SIGKILL',
    tools.sh,
    '-c',
    launchScript(options),
    'sh',
    options.fstab,
    tools.bwrap,
    ...bwrapArguments(),
  ];
}

export function launchParametersText(parameters: LaunchParameters): string {
  const { volume } = parameters;
  const [path, image] = volume.kind === 'loop' ? [volume.device, volume.image] : [volume.path, '-'];
  const lines = [volume.kind, path, image, parameters.volumeMountPath];
  if (lines.some((line) => /[\n\r\0]/.test(line))) throw new Error('launch parameters must be single lines');
  return `${lines.join('\n')}\n`;
}

function bwrapArguments(): string[] {
  return [
    '--unshare-user',
    '--userns-block-fd',
    String(USERNS_BLOCK_FD),
    '--info-fd',
    String(INFO_FD),
    '--uid',
    '0',
    '--gid',
    '0',
    '--unshare-pid',
    '--as-pid-1',
    '--unshare-cgroup',
    '--unshare-ipc',
    '--unshare-uts',
    '--hostname',
    SANDBOX_HOSTNAME,
    '--die-with-parent',
    '--new-session',
    '--cap-drop',
    'ALL',
    ...SANDBOX_CAPABILITIES.flatMap((capability) => ['--cap-add', capability]),
    '--seccomp',
    String(SECCOMP_FD),
    '--bind',
    STAGED_ROOT,
    '/',
    '--dev',
    '/dev',
    '--proc',
    '/proc',
    // /run is a tmpfs, as on systemd hosts (charged to the sandbox's memory): the runs' logs live
    // there, and tail follows a tmpfs through inotify, an overlay only by polling.
    '--tmpfs',
    '/run',
    '--perms',
    '1777',
    '--dir',
    '/run/lock',
    '--ro-bind',
    STAGED_INIT,
    INIT_IN_SANDBOX,
  ];
}

/**
 * The host-side script of an exec: the shell joins the sandbox's cgroups, reads the host pid of the
 * sandbox's init from stdin and becomes the helper's `enter`, which starts the sandbox's own shell
 * inside every namespace and the root of that init (see sandbox-helper.c for why that entry cannot
 * be hijacked); the shell reads the rest of stdin as its script. No request data passes through the
 * argv or environment of host programs.
 */
export function execHostScript(helper: SandboxHelper, procsFiles: string[]): string {
  return `${joinProcs(procsFiles)}IFS= read -r pid && exec ${shellQuote(helper.binary)} enter "$pid" /bin/sh -s`;
}

/**
 * Script the sandbox shell reads from stdin: environment, working directory, then the command with
 * stdin closed. Refuses what no process could receive (variable names that are not names, NUL bytes).
 */
export function execStdinScript(env: Record<string, string>, workdir: string, argv: string[]): string {
  const badName = Object.keys(env).find((name) => !isValidEnvName(name));
  if (badName !== undefined) throw new ProviderInvalidError('exec', `invalid environment variable name: ${badName}`);
  if ([workdir, ...argv, ...Object.values(env)].some((word) => word.includes('\0'))) {
    throw new ProviderInvalidError('exec', 'argv, environment values and workdir must not contain NUL bytes');
  }
  const exports = Object.entries(env).map(([name, value]) => `export ${name}=${shellQuote(value)}\n`);
  return `${exports.join('')}cd -- ${shellQuote(workdir)} || exit 1\nexec ${argv.map(shellQuote).join(' ')} </dev/null\n`;
}
