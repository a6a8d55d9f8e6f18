import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import type { Socket } from 'node:net';
import type { SandboxNetwork } from '../sandbox-provider';
import { ProviderFailureError } from '../sandbox-provider.errors';
import { BLOCKED_IPV4_CIDRS, BLOCKED_IPV6_CIDRS, IPV4_EMBEDDING_IPV6_CIDRS } from './egress-rules';
import { shellQuote } from './sandbox-commands';
import type { SandboxCgroups } from './sandbox-cgroups';
import type { SandboxSpawner, SpawnedProcess } from './sandbox-spawner';

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
const EXIT_FD = 4;
const START_TIMEOUT_MS = 10_000;
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

/** The egress filter's argv after its cgroup directory. */
export function egressFilterArguments(rules: EgressRule[], defaultVerdict: 'allow' | 'deny'): string[] {
  return [...rules.flatMap((rule) => [rule.verdict, rule.cidr, rule.protocol, String(rule.port)]), 'default', defaultVerdict];
}

/** What tells HTTP clients (curl, apt, npm, pip, git, Node) to use the egress proxy; the host's gateway is reached directly. */
export function proxyEnvironment(proxyUrl: string): Record<string, string> {
  const direct = `localhost,127.0.0.1,::1,${HOST_ADDRESS_IN_SANDBOX}`;
  return { HTTP_PROXY: proxyUrl, HTTPS_PROXY: proxyUrl, http_proxy: proxyUrl, https_proxy: proxyUrl, NO_PROXY: direct, no_proxy: direct };
}

/** The host's own interface addresses (IPv6 zone ids dropped). */
export function ownHostAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((entry) => entry !== undefined)
    .map((entry) => entry.address.replace(/%.*$/, ''));
}

/** The `nameserver` lines of the host's resolv.conf. */
export async function hostResolvers(file = '/etc/resolv.conf'): Promise<string[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return [...text.matchAll(/^\s*nameserver\s+([0-9a-fA-F.:]+)\s*$/gm)].map((match) => match[1]);
}

/**
 * The host side of a sandbox's network: its user-mode NAT (slirp4netns), which gives the sandbox's
 * own network namespace a tap device and opens the host-side sockets for its traffic, in a cgroup
 * of its own whose egress filter (eBPF, attached before the NAT starts) decides every connection.
 * The NAT runs outside all of the sandbox's namespaces: the sandbox cannot signal, trace or
 * reconfigure it, and it has no CAP_NET_ADMIN to change its own routes.
 */
export class SandboxNetworkStack {
  private constructor(private readonly process: SpawnedProcess) {}

  static async start(options: {
    spawner: SandboxSpawner;
    sh: string;
    slirp4netns: string;
    egressFilter: string;
    /** The NAT's cgroups; their v2 group carries the egress filter. */
    cgroups: SandboxCgroups;
    /** Host pid of a process in the sandbox's network namespace. */
    initPid: number;
    rules: EgressRule[];
    defaultVerdict: 'allow' | 'deny';
  }): Promise<SandboxNetworkStack> {
    const filterDir = options.cgroups.v2Dir;
    if (!filterDir) throw new ProviderFailureError('sandbox', 'no cgroup v2 hierarchy to attach the egress filter to');
    const script = natScript(options.cgroups.procsFiles, options.egressFilter, filterDir, options.slirp4netns);
    const args = ['-c', script, 'sh', String(options.initPid), ...egressFilterArguments(options.rules, options.defaultVerdict)];
    const process = await options.spawner.spawn(options.sh, args, { stdioCount: 5 });
    await waitUntilReady(process);
    return new SandboxNetworkStack(process);
  }

  /** Ends the NAT (the caller destroys its cgroups, which kills it in any case). */
  stop(): void {
    this.process.kill('SIGKILL');
  }
}

/**
 * Joins the NAT's cgroups, attaches the egress filter to them, then becomes slirp4netns, which
 * joins the sandbox's network namespace ($1) to make the tap device and returns to the host's to
 * open sockets. --enable-sandbox and --enable-seccomp confine slirp4netns itself (empty root, no
 * capabilities, a syscall filter) in case the sandbox's packets exploit it.
 */
function natScript(procsFiles: string[], egressFilter: string, filterDir: string, slirp4netns: string): string {
  const join = procsFiles.map((file) => `echo $$ > ${shellQuote(file)} && `).join('');
  const slirp = [slirp4netns, '--configure', `--mtu=${MTU}`, '--enable-sandbox', '--enable-seccomp', `--ready-fd=${READY_FD}`, `--exit-fd=${EXIT_FD}`];
  return `pid=$1 && shift && ${join}${shellQuote(egressFilter)} ${shellQuote(filterDir)} "$@" && exec ${slirp.map(shellQuote).join(' ')} "$pid" ${TAP_DEVICE}`;
}

/** slirp4netns writes "1" to its ready fd once the tap device is configured. */
function waitUntilReady(process: SpawnedProcess): Promise<void> {
  const [stdin, , stderr, ready] = process.stdio as Socket[];
  stdin.end();
  let errors = '';
  stderr.on('data', (chunk: Buffer) => (errors = (errors + chunk.toString()).slice(-ERROR_TAIL_CHARS)));
  return new Promise<void>((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      process.kill('SIGKILL');
      reject(new ProviderFailureError('sandbox', `the sandbox's network did not start: ${why}: ${errors.trim() || 'no error output'}`));
    };
    const timer = setTimeout(() => fail('timed out'), START_TIMEOUT_MS);
    const onExit = () => fail('the NAT exited');
    process.once('exit', onExit);
    ready.once('data', () => {
      clearTimeout(timer);
      process.removeListener('exit', onExit);
      for (const handle of [process, ...(process.stdio as Socket[])]) handle.unref();
      resolve();
    });
  });
}
