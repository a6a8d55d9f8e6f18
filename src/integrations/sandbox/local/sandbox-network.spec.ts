import { egressFilterArguments, egressRules, ipv6Addresses, localIpv4Routes, type HostEndpoints } from './sandbox-network';

const host: HostEndpoints = { gatewayPort: 4100, resolvers: ['10.255.255.53'], hostAddresses: ['192.0.2.2', 'fd00::2'] };
const network = (mode: 'none' | 'internet' | 'allowlist', cidrAllowlist: string[] = []) => ({ mode, cidrAllowlist, allowedDomains: [] });

describe('egressRules', () => {
  it('opens the host loopback only at the gateway port, before any deny', () => {
    const { rules } = egressRules(network('internet'), host);
    expect(rules[0]).toEqual({ verdict: 'allow', cidr: '127.0.0.1/32', protocol: 'tcp', port: 4100 });
    expect(rules.filter((rule) => rule.cidr.startsWith('127.') && rule.verdict === 'allow')).toHaveLength(1);
    expect(rules).toContainEqual({ verdict: 'deny', cidr: '127.0.0.0/8', protocol: 'any', port: 0 });
  });

  it('keeps the host\'s own addresses and the private ranges closed in every mode, even when an allowlist names them', () => {
    for (const mode of ['none', 'internet', 'allowlist'] as const) {
      const { rules } = egressRules(network(mode, ['10.0.0.0/8', '192.0.2.2/32']), host);
      const firstDeny = (cidr: string) => rules.findIndex((rule) => rule.cidr === cidr && rule.verdict === 'deny');
      const firstAllow = (cidr: string) => rules.findIndex((rule) => rule.cidr === cidr && rule.verdict === 'allow');
      expect(firstDeny('192.0.2.2/32')).toBeGreaterThan(-1);
      expect(firstDeny('fd00::2/128')).toBeGreaterThan(-1);
      expect(firstDeny('169.254.0.0/16')).toBeGreaterThan(-1);
      if (mode === 'allowlist') expect(firstAllow('10.0.0.0/8')).toBeGreaterThan(firstDeny('10.0.0.0/8'));
    }
  });

  it('lets DNS reach the host\'s resolvers (port 53 only) where names are needed', () => {
    const dns = { verdict: 'allow', cidr: '10.255.255.53/32', protocol: 'any', port: 53 };
    expect(egressRules(network('internet'), host).rules).toContainEqual(dns);
    expect(egressRules(network('allowlist', ['198.51.100.0/24']), host).rules).toContainEqual(dns);
    expect(egressRules(network('allowlist'), host).rules).not.toContainEqual(dns);
    expect(egressRules(network('none'), host).rules).not.toContainEqual(dns);
  });

  it('defaults to allow only for internet', () => {
    expect(egressRules(network('internet'), host).defaultVerdict).toBe('allow');
    expect(egressRules(network('none'), host).defaultVerdict).toBe('deny');
    expect(egressRules(network('allowlist', ['198.51.100.0/24']), host).defaultVerdict).toBe('deny');
  });

  it('opens a sandbox\'s egress proxy port, and nothing of the loopback without a gateway', () => {
    const { rules } = egressRules(network('allowlist'), { ...host, gatewayPort: null, proxyPort: 4200 });
    expect(rules.filter((rule) => rule.verdict === 'allow')).toEqual([{ verdict: 'allow', cidr: '127.0.0.1/32', protocol: 'tcp', port: 4200 }]);
  });
});

describe('egressFilterArguments', () => {
  it('writes four words per rule and the default last', () => {
    expect(egressFilterArguments([{ verdict: 'deny', cidr: '10.0.0.0/8', protocol: 'any', port: 0 }], 'allow')).toEqual(['deny', '10.0.0.0/8', 'any', '0', 'default', 'allow']);
  });
});

describe('the host addresses read from the kernel', () => {
  it('takes every /32 host LOCAL entry of fib_trie, whatever its interface', () => {
    const fibTrie = ['Local:', '  +-- 0.0.0.0/0 3 0 5', '     |-- 127.0.0.1', '        /32 host LOCAL', '     |-- 203.0.113.77', '        /32 host LOCAL', '     |-- 203.0.113.255', '        /32 link BROADCAST', '     |-- 10.0.0.0', '        /8 universe UNICAST'].join('\n');

    expect(localIpv4Routes(fibTrie)).toEqual(['127.0.0.1', '203.0.113.77']);
  });

  it('writes each /proc/net/if_inet6 address in colon notation', () => {
    const ifInet6 = '00000000000000000000000000000001 01 80 10 80       lo\nfd000000000000000000000000000002 02 40 00 80     eth0\n';

    expect(ipv6Addresses(ifInet6)).toEqual(['0:0:0:0:0:0:0:1', 'fd00:0:0:0:0:0:0:2']);
  });
});
