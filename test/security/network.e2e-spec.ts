/**
 * Hostile tenant, part 5: the network. From a root shell in its sandbox the attacker tries to reach
 * what the host can: the host's loopback services (PostgreSQL as superuser, Redis, this service's
 * own port), the host's own addresses, cloud metadata, and to open a port on the host. Every
 * attempt is judged from the host: listeners the test opens count what reached them.
 */
import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect, type Server } from 'node:net';
import { ownHostAddresses } from '../../src/integrations/sandbox/local/sandbox-network';
import { listen, portOf } from '../support/network-peer';
import { startTenant, type Tenant } from '../support/security-sandbox';

/** bash's /dev/tcp: exit 0 only when the TCP connection was established. */
const tcpProbe = (host: string, port: number) => `timeout 5 bash -c 'exec 3<>/dev/tcp/${host}/${port}' 2>/dev/null && echo connected || echo refused`;
/** The host's loopback as a sandbox's NAT would show it, and every address of the host's own interfaces. */
const HOST_FROM_SANDBOX = '10.0.2.2';

describe('a hostile tenant with a root shell cannot reach the host or its networks', () => {
  let tenant: Tenant;
  let tcpListener: Server;
  let udpReached = 0;
  const udpListener = createSocket('udp4');
  const tcpReached: string[] = [];
  let servicePort: number;
  const hostAddresses = ownHostAddresses().filter((address) => !address.includes(':'));

  beforeAll(async () => {
    tenant = await startTenant();
    servicePort = Number(new URL(tenant.app.url).port);
    tcpListener = await listen('0.0.0.0', (socket) => {
      tcpReached.push(String(socket.remoteAddress));
      socket.destroy();
    });
    udpListener.on('message', () => udpReached++);
    await new Promise<void>((resolve) => udpListener.bind(0, '0.0.0.0', resolve));
  });

  afterAll(async () => {
    await tenant?.app.close({ purge: true });
    await new Promise((resolve) => tcpListener.close(resolve));
    udpListener.close();
  });

  it.each(['internet', 'open', 'none', 'allowlist'])('network "%s": no TCP connection reaches a host service — PostgreSQL, Redis, this service, a test listener — on any host address', async (mode) => {
    const created = await tenant.user.post('/api/sandboxes', { volume_mount_path: '/workspace', network: mode, ...(mode === 'allowlist' ? { cidr_allowlist: ['0.0.0.0/0'] } : {}) });
    expect(created.status).toBe(201);
    expect(created.body.data.network).toBe(mode === 'open' ? 'internet' : mode);
    const id = created.body.data.sandbox_id as string;
    // 127.0.0.1 is the sandbox's own loopback: where a shared host network would expose PostgreSQL and Redis.
    const targets = ['127.0.0.1', HOST_FROM_SANDBOX, ...hostAddresses].flatMap((host) => [5432, 6379, servicePort, portOf(tcpListener)].map((port) => ({ host, port })));
    const script = targets.map(({ host, port }) => `echo "${host}:${port} $(${tcpProbe(host, port)})"`).join('\n');
    const outcome = await tenant.sh(id, script, 120);

    const connected = outcome.stdout.split('\n').filter((line) => line.endsWith(' connected'));
    expect(connected).toEqual([]);
    expect(outcome.stdout.split('\n').filter((line) => line.endsWith(' refused'))).toHaveLength(targets.length);
    expect(tcpReached).toEqual([]);
    await tenant.remove(id);
  });

  it('cannot reach an address the host gains after the sandbox started (a new interface, VPN or bridge)', async () => {
    const created = await tenant.user.post('/api/sandboxes', { volume_mount_path: '/workspace', network: 'internet' });
    expect(created.status).toBe(201);
    const id = created.body.data.sandbox_id as string;
    // TEST-NET-3, public as far as the filter's fixed ranges go: only its being the host's makes it forbidden.
    const address = '203.0.113.77';
    const link = `mssnew${process.pid % 100000}`;
    execFileSync('ip', ['link', 'add', link, 'type', 'veth', 'peer', 'name', `${link}p`]);
    try {
      execFileSync('ip', ['addr', 'add', `${address}/32`, 'dev', link]);
      execFileSync('ip', ['link', 'set', link, 'up']);
      await new Promise((resolve) => setTimeout(resolve, 1_000));

      const outcome = await tenant.sh(id, `echo "$(${tcpProbe(address, portOf(tcpListener))})"`, 30);

      expect(outcome.stdout.trim()).toBe('refused');
      expect(tcpReached).toEqual([]);
    } finally {
      execFileSync('ip', ['link', 'del', link]);
    }
    await tenant.remove(id);
  });

  it('reaches no cloud metadata endpoint and sends no UDP datagram to the host', async () => {
    const id = await tenant.create({ network: 'internet' });
    const udpPort = (udpListener.address() as { port: number }).port;
    const datagrams = [HOST_FROM_SANDBOX, ...hostAddresses].map((host) => `echo probe > /dev/udp/${host}/${udpPort}`).join('; ');
    const outcome = await tenant.sh(id, `${tcpProbe('169.254.169.254', 80)}; ${tcpProbe('100.100.100.200', 80)}; bash -c '${datagrams}' 2>/dev/null; sleep 1`, 60);
    expect(outcome.stdout).toBe('refused\nrefused\n');
    expect(udpReached).toBe(0);
    await tenant.remove(id);
  });

  it('cannot open a port on the host: a listener inside on 0.0.0.0 is not reachable from the host', async () => {
    const id = await tenant.create({ network: 'internet' });
    const port = 20000 + (process.pid % 20000);
    await tenant.sh(id, `nohup python3 -m http.server ${port} --bind 0.0.0.0 >/dev/null 2>&1 & sleep 1; ${tcpProbe('127.0.0.1', port)}`);
    for (const host of ['127.0.0.1', ...hostAddresses]) {
      const reachable = await new Promise<boolean>((resolve) => {
        const socket = connect({ host, port, timeout: 2000 }, () => resolve(true));
        socket.once('error', () => resolve(false));
        socket.once('timeout', () => resolve(false));
      }).finally(() => undefined);
      expect({ host, reachable }).toEqual({ host, reachable: false });
    }
    await tenant.remove(id);
  });

  it('cannot see, signal or reconfigure its NAT: the NAT outlives `kill -9 -1`, routes stay, and it has no CAP_NET_ADMIN', async () => {
    const id = await tenant.create({ network: 'internet' });
    const natsBefore = natProcesses();
    const outcome = await tenant.sh(id, 'ps -eo comm | grep -c slirp4netns; ip link set tap0 down 2>&1; ip route del default 2>&1; iptables -L 2>&1 | head -1; kill -9 -1; true');
    expect(outcome.stdout).toMatch(/^0\n/);
    expect(outcome.stdout).toMatch(/Operation not permitted/);
    expect(natProcesses()).toEqual(expect.arrayContaining(natsBefore));
    const after = await tenant.sh(id, `ip route | head -1; ${tcpProbe(HOST_FROM_SANDBOX, portOf(tcpListener))}`);
    expect(after.stdout).toBe('default via 10.0.2.2 dev tap0 \nrefused\n');
    await tenant.remove(id);
  });
});

function natProcesses(): string[] {
  try {
    return execFileSync('pgrep', ['-x', 'slirp4netns'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  } catch {
    return [];
  }
}
