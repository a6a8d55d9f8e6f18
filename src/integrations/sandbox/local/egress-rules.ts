import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';

/**
 * Destinations no sandbox may reach, whatever its policy: "this" network, private, carrier-grade
 * NAT, loopback, link-local (cloud metadata), IETF protocol assignments, benchmarking, multicast
 * and reserved (255.255.255.255 included). The local engine compiles the same lists into its
 * kernel filter, and the egress proxy checks every resolved address against them.
 */
export const BLOCKED_IPV4_CIDRS: readonly string[] = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '224.0.0.0/4',
  '240.0.0.0/4',
];

/**
 * Unspecified, loopback, unique-local, link-local and multicast. IPv4-mapped (::ffff:0:0/96) and
 * NAT64 (64:ff9b::/96) addresses are not listed: they are checked as the IPv4 address they carry.
 */
export const BLOCKED_IPV6_CIDRS: readonly string[] = ['::/128', '::1/128', 'fc00::/7', 'fe80::/10', 'ff00::/8'];

/** IPv6 prefixes whose last 32 bits are an IPv4 address, which is what gets checked. */
export const IPV4_EMBEDDING_IPV6_CIDRS: readonly string[] = ['::ffff:0:0/96', '64:ff9b::/96'];

export type IpFamily = 'ipv4' | 'ipv6';

export interface Cidr {
  family: IpFamily;
  /** The network address in canonical text form (IPv6 lowercase, compressed). */
  address: string;
  prefix: number;
}

export class CidrSyntaxError extends Error {}

const BITS: Record<IpFamily, number> = { ipv4: 32, ipv6: 128 };

/**
 * Parses `a.b.c.d/n` or `x:y::z/n`; a bare address is a /32 or /128. Host bits set below the
 * prefix are refused rather than silently cleared, so nobody allows more than they meant to.
 */
export function parseCidr(text: string): Cidr {
  const [address, prefixText, ...rest] = text.trim().split('/');
  const version = isIP(address);
  if (rest.length > 0 || version === 0 || address.includes('%')) throw new CidrSyntaxError(`"${text}" is not an IPv4 or IPv6 CIDR`);
  const family: IpFamily = version === 4 ? 'ipv4' : 'ipv6';
  const bits = BITS[family];
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) throw new CidrSyntaxError(`"${text}" has no valid prefix length`);
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (prefix > bits) throw new CidrSyntaxError(`"${text}" has a prefix longer than ${bits}`);
  const value = addressToBigInt(address, family);
  const network = value & maskOf(prefix, bits);
  if (network !== value) throw new CidrSyntaxError(`"${text}" has host bits set; the network is ${bigIntToAddress(network, family)}/${prefix}`);
  return { family, address: bigIntToAddress(network, family), prefix };
}

export function formatCidr(cidr: Cidr): string {
  return `${cidr.address}/${cidr.prefix}`;
}

/** Whether every address of `inner` lies in `outer`. */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || outer.prefix > inner.prefix) return false;
  const mask = maskOf(outer.prefix, BITS[outer.family]);
  return (addressToBigInt(inner.address, inner.family) & mask) === addressToBigInt(outer.address, outer.family);
}

/** The blocked range that wholly contains `cidr` (so allowing it could never work), if any. */
export function blockedRangeContaining(cidr: Cidr): string | undefined {
  const lists = cidr.family === 'ipv4' ? BLOCKED_IPV4_CIDRS : [...BLOCKED_IPV6_CIDRS, ...IPV4_EMBEDDING_IPV6_CIDRS];
  return lists.find((blocked) => cidrContains(parseCidr(blocked), cidr));
}

/** What buildBlockList needs of os.networkInterfaces(). */
export type InterfaceLister = () => Record<string, Array<{ address: string; family: string }> | undefined>;

/** The fixed blocked ranges plus every address of this host (a sandbox must not reach the host's services). */
export function buildBlockList(listInterfaces: InterfaceLister = networkInterfaces): BlockList {
  const list = new BlockList();
  for (const text of [...BLOCKED_IPV4_CIDRS, ...BLOCKED_IPV6_CIDRS]) {
    const { address, prefix, family } = parseCidr(text);
    list.addSubnet(address, prefix, family);
  }
  for (const entries of Object.values(listInterfaces())) {
    for (const entry of entries ?? []) list.addAddress(entry.address.split('%')[0], entry.family === 'IPv4' ? 'ipv4' : 'ipv6');
  }
  return list;
}

/** Whether a resolved address may be connected to; anything that is not an IP literal is refused. */
export function isAllowedDestination(ip: string, blockList: BlockList): boolean {
  const version = isIP(ip);
  if (version === 0) return false;
  if (version === 4) return !blockList.check(ip, 'ipv4');
  const embedded = embeddedIpv4(ip);
  if (embedded) return !blockList.check(embedded, 'ipv4');
  return !blockList.check(ip, 'ipv6');
}

/** The IPv4 address carried by an IPv4-mapped or NAT64 IPv6 address. */
function embeddedIpv4(ip: string): string | undefined {
  const value = addressToBigInt(ip, 'ipv6');
  for (const text of IPV4_EMBEDDING_IPV6_CIDRS) {
    const range = parseCidr(text);
    if (cidrContains(range, { family: 'ipv6', address: bigIntToAddress(value, 'ipv6'), prefix: 128 })) return bigIntToAddress(value & 0xffffffffn, 'ipv4');
  }
  return undefined;
}

function maskOf(prefix: number, bits: number): bigint {
  const all = (1n << BigInt(bits)) - 1n;
  return all ^ ((1n << BigInt(bits - prefix)) - 1n);
}

function addressToBigInt(address: string, family: IpFamily): bigint {
  if (family === 'ipv4') return address.split('.').reduce((value, octet) => (value << 8n) | BigInt(Number(octet)), 0n);
  return ipv6Groups(address).reduce((value, group) => (value << 16n) | BigInt(group), 0n);
}

/** The eight 16-bit groups of a valid IPv6 address (`::` expanded, a dotted IPv4 tail converted). */
function ipv6Groups(address: string): number[] {
  let text = address.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = addressToBigInt(dotted[1], 'ipv4');
    text = `${text.slice(0, dotted.index)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const parse = (part: string | undefined) => (part ? part.split(':').map((group) => parseInt(group, 16)) : []);
  const front = parse(head);
  const back = parse(tail);
  const fill = tail === undefined ? [] : new Array<number>(8 - front.length - back.length).fill(0);
  return [...front, ...fill, ...back];
}

function bigIntToAddress(value: bigint, family: IpFamily): string {
  if (family === 'ipv4') return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
  const groups = Array.from({ length: 8 }, (_, index) => ((value >> BigInt(112 - index * 16)) & 0xffffn).toString(16));
  // The WHATWG URL parser writes IPv6 hosts in the RFC 5952 canonical form.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

export class DomainPatternError extends Error {}

const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const MAX_DOMAIN_LENGTH = 253;

/**
 * A host name or `*.example.com` wildcard, lowercased and without a trailing dot. Refuses ports,
 * IP literals, single-label names and anything that is not a DNS name.
 */
export function parseDomainPattern(text: string): string {
  const lowered = text.trim().toLowerCase().replace(/\.$/, '');
  const name = lowered.startsWith('*.') ? lowered.slice(2) : lowered;
  if (isIP(name) !== 0 || isIP(lowered.replace(/^\[|\]$/g, '')) !== 0) throw new DomainPatternError(`"${text}" is an IP address; list it in cidr_allowlist`);
  if (lowered.length > MAX_DOMAIN_LENGTH) throw new DomainPatternError(`"${text.slice(0, 40)}…" is longer than ${MAX_DOMAIN_LENGTH} characters`);
  const labels = name.split('.');
  if (labels.length < 2 || !labels.every((label) => DNS_LABEL.test(label)) || /^\d+$/.test(labels[labels.length - 1])) {
    throw new DomainPatternError(`"${text}" is not a host name or *.domain wildcard (no ports, schemes or paths)`);
  }
  return lowered;
}

/** `*.example.com` matches any subdomain but not example.com itself; case and a trailing dot are ignored. */
export function domainAllowed(host: string, patterns: readonly string[]): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  return patterns.some((pattern) => (pattern.startsWith('*.') ? name.endsWith(pattern.slice(1)) && name.length > pattern.length - 1 : name === pattern));
}
