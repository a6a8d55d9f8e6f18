import type { SandboxNetwork } from '../sandbox-provider';
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
/**
 * The init drops the descriptor bwrap leaves it, prints this once the sandbox is set up, then lives
 * until its stdin (held by the service) closes.
 */
export const READY_LINE = 'sandbox-ready';
const INIT_SCRIPT = `exec ${USERNS_BLOCK_FD}<&- && echo ${READY_LINE} && read -r _`;

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

export interface LaunchOptions {
  tools: HostTools;
  procsFiles: string[];
  fstab: string;
  rootDir: string;
}

/** What a prepared launcher reads from stdin before it becomes the sandbox. */
export interface LaunchParameters {
  network: SandboxNetwork;
  volumeDir: string;
  volumeMountPath: string;
}

/**
 * The launcher's script. In new mount and pid namespaces still owned by the host (nothing reaches
 * the host's mount table) the sandbox's pid 1 joins its cgroups, mounts the overlays and a
 * read-only /proc, waits for its parameters, then becomes bwrap, which puts the sandbox in a user
 * namespace (plus ipc, uts and, for network "none", net) where those mounts are locked: not even
 * the sandbox's root can unmount them or make them writable.
 */
function launchScript(options: LaunchOptions): string {
  return [
    `${joinProcs(options.procsFiles)}${shellQuote(options.tools.mount)} -a -T "$1" || exit 125`,
    'bwrap=$2 init=$3 && shift 3',
    'IFS= read -r network && IFS= read -r volume && IFS= read -r target || exit 125',
    'if [ "$network" = none ]; then set -- "$@" --unshare-net; fi',
    'exec "$bwrap" "$@" --bind "$volume" "$target" --chdir / -- /bin/sh -c "$init"',
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
    '--fork',
    '--kill-child=SIGKILL',
    tools.sh,
    '-c',
    launchScript(options),
    'sh',
    options.fstab,
    tools.bwrap,
    INIT_SCRIPT,
    ...bwrapArguments(options.rootDir),
  ];
}

export function launchParametersText(parameters: LaunchParameters): string {
  const lines = [parameters.network, parameters.volumeDir, parameters.volumeMountPath];
  if (lines.some((line) => /[\n\r\0]/.test(line))) throw new Error('launch parameters must be single lines');
  return `${lines.join('\n')}\n`;
}

function bwrapArguments(rootDir: string): string[] {
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
    '--unshare-ipc',
    '--unshare-uts',
    '--hostname',
    SANDBOX_HOSTNAME,
    '--die-with-parent',
    '--new-session',
    '--bind',
    rootDir,
    '/',
    '--dev',
    '/dev',
  ];
}

/**
 * The host-side script of an exec: the shell joins the sandbox's cgroups, reads the host pid of the
 * sandbox's init from stdin and becomes nsenter, which enters every namespace and the root of that
 * init and starts the sandbox's own shell, reading the rest of stdin as its script. No request data
 * passes through the argv or environment of host programs.
 */
export function execHostScript(tools: HostTools, procsFiles: string[]): string {
  return `${joinProcs(procsFiles)}IFS= read -r pid && exec ${shellQuote(tools.nsenter)} -t "$pid" -U -m -p -i -u -n -r -w -- /bin/sh -s`;
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

/** Runs argv on a pseudo-terminal inside the sandbox. */
export function ptyArgv(argv: string[]): string[] {
  return ['script', '-qfec', argv.map(shellQuote).join(' '), '/dev/null'];
}
