import { readFileSync } from 'node:fs';
import { readFile, readlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { networkInterfaces } from 'node:os';
import type { SandboxNetwork } from '../sandbox-provider';
import { ProviderFailureError } from '../sandbox-provider.errors';
import { BLOCKED_IPV4_CIDRS, BLOCKED_IPV6_CIDRS, IPV4_EMBEDDING_IPV6_CIDRS } from './egress-rules';
import { shellQuote } from './sandbox-commands';
import type { SandboxCgroups } from './sandbox-cgroups';
import type { KeepOptions, SandboxSpawner, SpawnedProcess } from './sandbox-spawner';

/**
 * slirp4netns' fixed addresses inside a sandbox: the host (its loopback, through the NAT) and the
 * NAT's DNS forwarder. The sandbox's resolv.conf names the forwarder.
 */
export const HOST_ADDRESS_IN_SANDBOX = '10.0.2.2';
export const DNS_FORWARDER_IN_SANDBOX = '10.0.2.3';
const HOST_LOOPBACK = '127.0.0.1';
const TAP_DEVICE = 'tap0';
const MTU = 65520;
const READY_FD = 3;
const START_TIMEOUT_MS = 10_000;
const ATTACHED_LINE = 'egress-filter-attached';
const NAMESPACE_POLL_MS = 2;
const ERROR_TAIL_CHARS = 2000;

/** One rule of the egress filter (native/egress-filter.c): the first that matches decides. */
export interface EgressRule {
  verdict: 'allow' | 'deny';
  cidr: string;
  protocol: 'tcp' | 'udp' | 'any';
  /** 0 = any port. */
  port: number;
}

/** What the host offers a sandbox, besides its policy. */
export interface HostEndpoints {
  /** The model gateway's port on host loopback, reachable from every mode. */
  gatewayPort: number | null;
  /** allowlist with domains: this sandbox's own egress proxy port on host loopback. */
  proxyPort?: number;
  /** The host's DNS servers: the NAT's forwarder asks them (port 53 only). */
  resolvers: string[];
  /** Every address of the host's own interfaces. */
  hostAddresses: string[];
}

/**
 * The ordered rules for a sandbox's NAT. The host's loopback is reachable only at the ports the
 * service opens for this sandbox; the blocked ranges and the host's own addresses never (a CIDR
 * allowlist cannot reopen them); then the mode decides.
 */
export function egressRules(network: SandboxNetwork, host: HostEndpoints): { rules: EgressRule[]; defaultVerdict: 'allow' | 'deny' } {
  const loopbackPorts = [host.gatewayPort, host.proxyPort].filter((port): port is number => typeof port === 'number' && port > 0);
  const usesDns = network.mode === 'internet' || (network.mode === 'allowlist' && network.cidrAllowlist.length > 0);
  const rules: EgressRule[] = [
    ...loopbackPorts.map((port) => ({ verdict: 'allow' as const, cidr: `${HOST_LOOPBACK}/32`, protocol: 'tcp' as const, port })),
    ...(usesDns ? host.resolvers.map((resolver) => ({ verdict: 'allow' as const, cidr: hostCidr(resolver), protocol: 'any' as const, port: 53 })) : []),
    ...[...BLOCKED_IPV4_CIDRS, ...BLOCKED_IPV6_CIDRS, ...IPV4_EMBEDDING_IPV6_CIDRS, ...host.hostAddresses.map(hostCidr)].map((cidr) => ({ verdict: 'deny' as const, cidr, protocol: 'any' as const, port: 0 })),
    ...(network.mode === 'allowlist' ? network.cidrAllowlist.map((cidr) => ({ verdict: 'allow' as const, cidr, protocol: 'any' as const, port: 0 })) : []),
  ];
  return { rules, defaultVerdict: network.mode === 'internet' ? 'allow' : 'deny' };
}

function hostCidr(address: string): string {
  return address.includes(':') ? `${address}/128` : `${address}/32`;
}

/**
 * Rules that deny these host addresses and allow everything else: attached beside a sandbox's own
 * filter (every attached program must allow a connection), for addresses the host gained after it.
 */
export function hostAddressDenial(addresses: string[]): { rules: EgressRule[]; defaultVerdict: 'allow' } {
  return { rules: addresses.map((address) => ({ verdict: 'deny' as const, cidr: hostCidr(address), protocol: 'any' as const, port: 0 })), defaultVerdict: 'allow' };
}

/** Attaches one more egress filter program to a NAT's cgroup v2 directory (the helper attaches and exits). */
export async function attachEgressFilter(spawner: SandboxSpawner, egressFilter: string, filterDir: string, rules: EgressRule[], defaultVerdict: 'allow' | 'deny'): Promise<void> {
  const filter = await spawner.spawn(egressFilter, [filterDir, ...egressFilterArguments(rules, defaultVerdict)], { stdioCount: 3 });
  let errors = '';
  filter.stdio[2].on('data', (chunk: Buffer) => (errors = (errors + chunk.toString()).slice(-ERROR_TAIL_CHARS)));
  filter.stdio[1].resume();
  filter.stdio[0].end();
  const code = await new Promise<number | null>((resolve) => filter.once('close', (exitCode: number | null) => resolve(exitCode)));
  if (code !== 0) throw new ProviderFailureError('sandbox', `the egress filter could not be attached: ${errors.trim() || `exit ${code}`}`);
}

/** The egress filter's argv after its cgroup directory. */
export function egressFilterArguments(rules: EgressRule[], defaultVerdict: 'allow' | 'deny'): string[] {
  return [...rules.flatMap((rule) => [rule.verdict, rule.cidr, rule.protocol, String(rule.port)]), 'default', defaultVerdict];
}

/** What tells HTTP clients (curl, apt, npm, pip, git, Node) to use the egress proxy; the host's gateway is reached directly. */
export function proxyEnvironment(proxyUrl: string): Record<string, string> {
  const direct = `localhost,127.0.0.1,::1,${HOST_ADDRESS_IN_SANDBOX}`;
  return { HTTP_PROXY: proxyUrl, HTTPS_PROXY: proxyUrl, http_proxy: proxyUrl, https_proxy: proxyUrl, NO_PROXY: direct, no_proxy: direct };
}

/**
 * Every address the host accepts connections on as its own, from the kernel's tables: the local
 * IPv4 routes (/proc/net/fib_trie) and the IPv6 addresses (/proc/net/if_inet6), whatever the state
 * of their interfaces (Node's list leaves out interfaces without carrier, whose addresses are still
 * local), plus Node's list (IPv6 zone ids dropped).
 */
export function ownHostAddresses(): string[] {
  const fromNode = Object.values(networkInterfaces())
    .flat()
    .filter((entry) => entry !== undefined)
    .map((entry) => entry.address.replace(/%.*$/, ''));
  return [...new Set([...fromNode, ...localIpv4Routes(readProcFile('/proc/net/fib_trie')), ...ipv6Addresses(readProcFile('/proc/net/if_inet6'))])];
}

function readProcFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** The addresses of `/32 host LOCAL` entries of /proc/net/fib_trie: the host's own IPv4 addresses. */
export function localIpv4Routes(fibTrie: string): string[] {
  const addresses = new Set<string>();
  let last: string | undefined;
  for (const line of fibTrie.split('\n')) {
    const leaf = /\|-- (\d+\.\d+\.\d+\.\d+)$/.exec(line.trim() === '' ? '' : line.trimEnd());
    if (leaf) last = leaf[1];
    else if (last && /^\s*\/32 host LOCAL$/.test(line)) addresses.add(last);
  }
  return [...addresses];
}

/** The addresses of /proc/net/if_inet6 (32 hex digits each) in their usual notation. */
export function ipv6Addresses(ifInet6: string): string[] {
  return ifInet6
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0])
    .filter((hex) => /^[0-9a-f]{32}$/.test(hex))
    .map((hex) => (hex.match(/.{4}/g) as string[]).map((group) => group.replace(/^0{1,3}/, '')).join(':'));
}

/** The `nameserver` lines of the host's resolv.conf. */
export async function hostResolvers(file = '/etc/resolv.conf'): Promise<string[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return [...text.matchAll(/^\s*nameserver\s+([0-9a-fA-F.:]+)\s*$/gm)].map((match) => match[1]);
}

/**
 * The host side of a sandbox's network: its user-mode NAT (slirp4netns), which gives the sandbox's
 * network namespace a tap device and opens the host-side sockets for its traffic, in a cgroup of
 * its own whose egress filter (eBPF) decides every connection. The NAT runs outside all of the
 * sandbox's namespaces: the sandbox cannot signal, trace or reconfigure it. It is prepared with the
 * launcher (the namespace exists before the sandbox does) and gets its filter when the sandbox
 * starts: nothing runs in the namespace before that.
 */
export class SandboxNetworkStack {
  private errors = '';
  private output = '';

  private constructor(private readonly process: SpawnedProcess) {
    const [, stdout, stderr] = process.stdio;
    stderr.on('data', (chunk: Buffer) => (this.errors = (this.errors + chunk.toString()).slice(-ERROR_TAIL_CHARS)));
    stdout.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
  }

  /** Starts the NAT for the network namespace of `netnsPid`; resolves once its tap device is configured. */
  static async prepare(options: { spawner: SandboxSpawner; sh: string; slirp4netns: string; egressFilter: string; cgroups: SandboxCgroups; netnsPid: number }): Promise<SandboxNetworkStack> {
    const filterDir = options.cgroups.v2Dir;
    if (!filterDir) throw new ProviderFailureError('sandbox', 'no cgroup v2 hierarchy to attach the egress filter to');
    await untilOwnNetworkNamespace(options.netnsPid);
    const script = natScript(options.cgroups.procsFiles, options.egressFilter, filterDir, options.slirp4netns);
    const process = await options.spawner.spawn(options.sh, ['-c', script, 'sh', String(options.netnsPid)], { stdioCount: 4, detached: true });
    const stack = new SandboxNetworkStack(process);
    await stack.until(() => new Promise((resolve) => process.stdio[READY_FD].once('data', resolve)), 'the NAT did not start');
    return stack;
  }

  /** Attaches the egress filter of the sandbox's policy; the sandbox must not start before. */
  async applyPolicy(rules: EgressRule[], defaultVerdict: 'allow' | 'deny'): Promise<void> {
    const words = egressFilterArguments(rules, defaultVerdict);
    if (words.some((word) => !/^[0-9A-Za-z.:/]+$/.test(word))) throw new ProviderFailureError('sandbox', 'an egress rule holds an unexpected character');
    this.process.stdio[0].write(`${words.join(' ')}\n`);
    await this.until(() => this.attached(), 'the egress filter could not be attached');
    for (const handle of [this.process, ...this.process.stdio]) handle.unref();
  }

  kill(): void {
    this.process.kill('SIGKILL');
  }

  /** Has the supervisor keep the NAT beyond this service (see SpawnedProcess.keep). */
  keep(options: KeepOptions): void {
    this.process.keep(options);
  }

  private attached(): Promise<void> {
    const stdout = this.process.stdio[1];
    return new Promise((resolve) => {
      const check = () => {
        if (!this.output.includes(ATTACHED_LINE)) return;
        stdout.removeListener('data', check);
        resolve();
      };
      stdout.on('data', check);
      check();
    });
  }

  /** Waits for `step`, failing when the NAT's script exits or takes too long. */
  private async until(step: () => Promise<unknown>, what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    let onExit: (() => void) | undefined;
    const failure = new Promise<never>((_, reject) => {
      const fail = (why: string) => {
        this.kill();
        reject(new ProviderFailureError('sandbox', `${what}: ${why}: ${this.errors.trim() || 'no error output'}`));
      };
      timer = setTimeout(() => fail('timed out'), START_TIMEOUT_MS);
      onExit = () => fail('it exited');
      this.process.once('exit', onExit);
    });
    try {
      await Promise.race([step(), failure]);
    } finally {
      clearTimeout(timer);
      this.process.removeListener('exit', onExit!);
    }
  }
}

/**
 * A launcher just spawned may not have unshared its network namespace yet: its tap device must
 * never be made in the host's.
 */
async function untilOwnNetworkNamespace(pid: number): Promise<void> {
  const hosts = await readlink('/proc/self/ns/net');
  const deadline = Date.now() + START_TIMEOUT_MS;
  while ((await readlink(`/proc/${pid}/ns/net`).catch(() => hosts)) === hosts) {
    if (Date.now() > deadline) throw new ProviderFailureError('sandbox', `the launcher ${pid} has no network namespace of its own`);
    await sleep(NAMESPACE_POLL_MS);
  }
}

/**
 * Joins the NAT's cgroups and starts slirp4netns, which joins the network namespace ($1) to make
 * the tap device and returns to the host's to open sockets (--enable-sandbox and --enable-seccomp
 * confine slirp4netns itself, in case the sandbox's packets exploit it); then waits for the
 * sandbox's rules on stdin, attaches the egress filter and says so.
 */
function natScript(procsFiles: string[], egressFilter: string, filterDir: string, slirp4netns: string): string {
  const join = procsFiles.map((file) => `echo $$ > ${shellQuote(file)} && `).join('');
  const slirp = [slirp4netns, '--configure', `--mtu=${MTU}`, '--enable-sandbox', '--enable-seccomp', `--ready-fd=${READY_FD}`];
  return [
    // It outlives the service (kept by the supervisor; killed with its cgroup): a write to the service's closed end must not kill it.
    `set -f && trap '' PIPE && ${join}true || exit 125`,
    // Started after the join, from this shell: a `… && slirp &` list would run in a subshell forked before it.
    `${slirp.map(shellQuote).join(' ')} "$1" ${TAP_DEVICE} &`,
    `IFS= read -r rules && ${shellQuote(egressFilter)} ${shellQuote(filterDir)} $rules && echo ${ATTACHED_LINE} || kill -9 $!`,
    'wait',
  ].join('\n');
}
