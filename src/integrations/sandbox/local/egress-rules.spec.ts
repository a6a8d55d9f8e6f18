import { BlockList } from 'node:net';
import type { NetworkInterfaceInfo } from 'node:os';
import { BLOCKED_IPV4_CIDRS, BLOCKED_IPV6_CIDRS, blockedRangeContaining, buildBlockList, cidrContains, formatCidr, isAllowedDestination, parseCidr, domainAllowed, parseDomainPattern } from './egress-rules';

describe('parseCidr', () => {
  it.each([
    ['10.0.0.0/8', { family: 'ipv4', address: '10.0.0.0', prefix: 8 }],
    ['203.0.113.7', { family: 'ipv4', address: '203.0.113.7', prefix: 32 }],
    ['0.0.0.0/0', { family: 'ipv4', address: '0.0.0.0', prefix: 0 }],
    ['2001:DB8:0:0::/32', { family: 'ipv6', address: '2001:db8::', prefix: 32 }],
    ['2001:db8::1', { family: 'ipv6', address: '2001:db8::1', prefix: 128 }],
    ['::ffff:192.0.2.1', { family: 'ipv6', address: '::ffff:c000:201', prefix: 128 }],
    ['::/0', { family: 'ipv6', address: '::', prefix: 0 }],
  ])('reads %s', (text, expected) => {
    expect(parseCidr(text)).toEqual(expected);
  });

  it.each([
    ['10.1.2.3/8', /host bits set; the network is 10\.0\.0\.0\/8/],
    ['2001:db8::1/64', /host bits set; the network is 2001:db8::\/64/],
    ['10.0.0.0/33', /prefix longer than 32/],
    ['::/129', /prefix longer than 128/],
    ['10.0.0.0/', /no valid prefix/],
    ['10.0.0.0/-1', /no valid prefix/],
    ['10.0.0.0/8/8', /not an IPv4 or IPv6 CIDR/],
    ['example.com/24', /not an IPv4 or IPv6 CIDR/],
    ['256.0.0.0/8', /not an IPv4 or IPv6 CIDR/],
    ['fe80::1%eth0/128', /not an IPv4 or IPv6 CIDR/],
    ['', /not an IPv4 or IPv6 CIDR/],
  ])('refuses %s', (text, message) => {
    expect(() => parseCidr(text)).toThrow(message);
  });

  it('round-trips through formatCidr and compares ranges', () => {
    expect(formatCidr(parseCidr('192.168.0.0/16'))).toBe('192.168.0.0/16');
    expect(cidrContains(parseCidr('10.0.0.0/8'), parseCidr('10.2.0.0/16'))).toBe(true);
    expect(cidrContains(parseCidr('10.2.0.0/16'), parseCidr('10.0.0.0/8'))).toBe(false);
    expect(cidrContains(parseCidr('10.0.0.0/8'), parseCidr('::/0'))).toBe(false);
  });

  it('names the blocked range that wholly contains a CIDR, not one that merely overlaps it', () => {
    expect(blockedRangeContaining(parseCidr('169.254.169.254'))).toBe('169.254.0.0/16');
    expect(blockedRangeContaining(parseCidr('::ffff:10.0.0.1'))).toBe('::ffff:0:0/96');
    expect(blockedRangeContaining(parseCidr('fd00::/8'))).toBe('fc00::/7');
    expect(blockedRangeContaining(parseCidr('0.0.0.0/0'))).toBeUndefined();
    expect(blockedRangeContaining(parseCidr('203.0.113.0/24'))).toBeUndefined();
  });

  it('lists only well-formed network addresses', () => {
    for (const text of [...BLOCKED_IPV4_CIDRS, ...BLOCKED_IPV6_CIDRS]) expect(formatCidr(parseCidr(text))).toBe(text);
  });
});

describe('isAllowedDestination', () => {
  const host: Record<string, NetworkInterfaceInfo[]> = {
    eth0: [
      { address: '203.0.113.10', family: 'IPv4', netmask: '255.255.255.0', mac: '00:00:00:00:00:00', internal: false, cidr: '203.0.113.10/24' },
      { address: 'fe80::1%eth0', family: 'IPv6', netmask: 'ffff:ffff:ffff:ffff::', mac: '00:00:00:00:00:00', internal: false, cidr: 'fe80::1/64', scopeid: 2 },
      { address: '2001:db8::10', family: 'IPv6', netmask: 'ffff:ffff:ffff:ffff::', mac: '00:00:00:00:00:00', internal: false, cidr: '2001:db8::10/64', scopeid: 0 },
    ],
  };
  const blockList = buildBlockList(() => host);

  it.each([
    '0.1.2.3', '10.0.0.1', '100.64.0.1', '127.0.0.1', '169.254.169.254', '172.16.0.1', '172.31.255.255', '192.0.0.8', '192.168.1.1',
    '198.18.0.1', '224.0.0.1', '240.0.0.1', '255.255.255.255', '::', '::1', 'fd00::1', 'fe80::1', 'ff02::1',
    '::ffff:127.0.0.1', '::ffff:a9fe:a9fe', '64:ff9b::10.0.0.1', '203.0.113.10', '2001:db8::10', 'example.com', '',
  ])('refuses %s', (ip) => {
    expect(isAllowedDestination(ip, blockList)).toBe(false);
  });

  it.each(['8.8.8.8', '172.32.0.1', '203.0.113.11', '2606:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808'])('allows %s', (ip) => {
    expect(isAllowedDestination(ip, blockList)).toBe(true);
  });

  it('uses an injected list as it is', () => {
    expect(isAllowedDestination('127.0.0.1', new BlockList())).toBe(true);
  });
});

describe('parseDomainPattern', () => {
  it.each([
    ['API.Example.com', 'api.example.com'],
    ['*.Example.COM.', '*.example.com'],
    ['registry.npmjs.org', 'registry.npmjs.org'],
    ['xn--bcher-kva.example', 'xn--bcher-kva.example'],
  ])('reads %s as %s', (text, expected) => {
    expect(parseDomainPattern(text)).toBe(expected);
  });

  it.each([
    ['example.com:443', /not a host name/],
    ['https://example.com', /not a host name/],
    ['example.com/path', /not a host name/],
    ['localhost', /not a host name/],
    ['*.com', /not a host name/],
    ['a.*.example.com', /not a host name/],
    ['*', /not a host name/],
    ['-bad.example.com', /not a host name/],
    ['under_score.example.com', /not a host name/],
    ['1.2.3', /not a host name/],
    ['10.0.0.1', /IP address/],
    ['*.10.0.0.1', /IP address/],
    ['[::1]', /IP address/],
    ['::1', /IP address/],
    [`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(63)}.com`, /longer than 253/],
  ])('refuses %s', (text, message) => {
    expect(() => parseDomainPattern(text)).toThrow(message);
  });
});

describe('domainAllowed', () => {
  const patterns = ['api.example.com', '*.npmjs.org'];
  it.each(['api.example.com', 'API.EXAMPLE.COM.', 'registry.npmjs.org', 'a.b.npmjs.org'])('allows %s', (host) => {
    expect(domainAllowed(host, patterns)).toBe(true);
  });
  it.each(['example.com', 'x.api.example.com', 'npmjs.org', 'evilnpmjs.org', 'npmjs.org.evil.com'])('refuses %s', (host) => {
    expect(domainAllowed(host, patterns)).toBe(false);
  });
});
