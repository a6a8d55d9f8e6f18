import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Logger } from '@nestjs/common';
import { AppConfig } from '../src/config/app-config';
import { LocalSandboxProvider } from '../src/integrations/sandbox/local/local-sandbox.provider';
import { SandboxCgroups } from '../src/integrations/sandbox/local/sandbox-cgroups';
import { DNS_FORWARDER_IN_SANDBOX, HOST_ADDRESS_IN_SANDBOX, ownHostAddresses } from '../src/integrations/sandbox/local/sandbox-network';
import { ModelGatewayEndpoint } from '../src/integrations/sandbox/model-gateway-endpoint';
import type { ExecRequest, SandboxNetwork, SandboxSpec } from '../src/integrations/sandbox/sandbox-provider';
import { connectOnHost, listen, portOf, TestPeerHost } from './support/network-peer';
import { ImageStepFailedError, InvalidImageReferenceError, RegistryUnavailableError, SandboxGoneError } from '../src/integrations/sandbox/sandbox-provider.errors';

jest.setTimeout(60_000);

const MAX_PROCESSES = 48;
const ENV_MARKER = `marker-${process.pid}-${Date.now()}`;

describe('LocalSandboxProvider on this host', () => {
  let dataDir: string;
  let provider: LocalSandboxProvider;
  let counter = 0;
  const gatewayEndpoint = new ModelGatewayEndpoint();

  beforeAll(() => {
    Logger.overrideLogger(false);
    process.env.LOCAL_SANDBOX_TEST_MARKER = ENV_MARKER;
    dataDir = mkdtempSync(join(tmpdir(), 'local-sandbox-e2e-'));
    provider = new LocalSandboxProvider(
      AppConfig.fromEnvironment({ DATA_DIR: dataDir, SANDBOX_MAX_PROCESSES: String(MAX_PROCESSES), SANDBOX_MEMORY_LIMIT_MB: '512', SANDBOX_CPU_LIMIT: '1' }),
      gatewayEndpoint,
    );
    provider.assertReady();
  });

  afterAll(async () => {
    // Stopping the engine leaves sandboxes running (a restarted service takes them over): end them first.
    for (const id of readdirSync(join(dataDir, 'sandboxes')).filter((name) => /^sbx-[0-9a-f]{12}$/.test(name))) await provider.terminate(id);
    await provider.onApplicationShutdown();
    delete process.env.LOCAL_SANDBOX_TEST_MARKER;
    rmSync(dataDir, { recursive: true, force: true });
  });

  function spec(overrides: Partial<SandboxSpec> = {}): SandboxSpec {
    return {
      sandboxId: `sbx${++counter}`,
      accountId: 'acct-a',
      dockerfileCommands: [],
      volumeName: 'work',
      volumeMountPath: '/workspace',
      workdir: '/workspace',
      env: {},
      secrets: [],
      network: { mode: 'internet', cidrAllowlist: [], allowedDomains: [] },
      timeoutSeconds: 120,
      ...overrides,
    };
  }

  async function create(overrides: Partial<SandboxSpec> = {}): Promise<string> {
    const handle = await provider.create(spec(overrides));
    return handle.providerSandboxId;
  }

  async function run(id: string, argv: string[], request: Partial<ExecRequest> = {}) {
    const execution = await provider.exec(id, { argv, ...request });
    let stdout = '';
    let stderr = '';
    execution.stdout.on('data', (chunk) => (stdout += chunk));
    execution.stderr.on('data', (chunk) => (stderr += chunk));
    const exit = await execution.wait();
    return { ...exit, stdout, stderr };
  }

  const sh = (id: string, script: string, request: Partial<ExecRequest> = {}) => run(id, ['/bin/sh', '-c', script], request);

  /** Sandbox directories of sandboxes handed out (a prepared one waiting to be used has no state file yet). */
  function handedOutSandboxDirs(): string[] {
    return readdirSync(join(dataDir, 'sandboxes')).filter((entry) => existsSync(join(dataDir, 'sandboxes', entry, 'state.json')));
  }

  /** The pids cgroup directory of a host process. */
  function pidsCgroupOf(pid: number): string {
    const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((entry) => /^\d+:pids:/.test(entry))!;
    return join('/sys/fs/cgroup/pids', line.slice(line.indexOf(':pids:') + ':pids:'.length));
  }

  /** How many forks the pids limit has refused in that group. */
  function forksRefused(pidsGroup: string): number {
    return Number(/^max (\d+)/m.exec(readFileSync(join(pidsGroup, 'pids.events'), 'utf8'))?.[1] ?? 0);
  }

  /** Host pids whose cgroups name this sandbox. */
  function hostProcessesOf(id: string): number[] {
    return readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cgroup`, 'utf8').includes(`/modal-sandboxes/${id}\n`);
        } catch {
          return false;
        }
      })
      .map(Number);
  }

  it('creates a sandbox, runs commands with their output and exit codes, and terminates it', async () => {
    const handle = await provider.create(spec());
    const id = handle.providerSandboxId;

    expect(handle.limits).toEqual({ lifetime_seconds: 120, max_processes: MAX_PROCESSES, memory_bytes: 512 * 1024 * 1024, cpu_cores: 1, disk_bytes: 10240 * 1024 * 1024, exec_output_bytes: 1024 * 1024 });
    expect(await run(id, ['echo', 'hello from the sandbox'])).toMatchObject({ exitCode: 0, timedOut: false, stdout: 'hello from the sandbox\n' });
    expect(await sh(id, 'echo oops >&2; exit 7')).toMatchObject({ exitCode: 7, stderr: 'oops\n' });
    expect(await run(id, ['no-such-command'])).toMatchObject({ exitCode: 127 });
    expect(await provider.status(id)).toEqual({ status: 'running' });

    await provider.terminate(id);
    await provider.terminate(id);

    expect(await provider.status(id)).toEqual({ status: 'terminated', exitReason: 'terminated' });
    await expect(provider.exec(id, { argv: ['true'] })).rejects.toBeInstanceOf(SandboxGoneError);
    expect(hostProcessesOf(id)).toEqual([]);
    expect(existsSync(join(dataDir, 'sandboxes', id))).toBe(false);
    expect(await provider.reattach(id, spec())).toMatchObject({ status: 'terminated' });
    expect(handedOutSandboxDirs()).toEqual([]);
  });

  it('creates sandboxes concurrently, each with its own root and processes', async () => {
    const ids = await Promise.all([create(), create(), create()]);

    expect(new Set(ids).size).toBe(3);
    const outputs = await Promise.all(ids.map((id, index) => sh(id, `echo ${index} > /root/mine && cat /root/mine && ls /proc | grep -c '^[0-9]'`)));
    outputs.forEach((output, index) => expect(output).toMatchObject({ exitCode: 0, stdout: expect.stringMatching(new RegExp(`^${index}\n`)) }));
    await Promise.all(ids.map((id) => provider.terminate(id)));
  });

  it('streams output while the command is still running', async () => {
    const id = await create();
    const execution = await provider.exec(id, { argv: ['/bin/sh', '-c', 'echo first; sleep 5; echo second'] });

    const first = await new Promise<string>((resolve) => execution.stdout.once('data', (chunk) => resolve(String(chunk))));
    expect(first).toBe('first\n');

    await execution.kill();
    expect(await execution.wait()).toMatchObject({ timedOut: false });
    expect((await sh(id, 'cat /proc/[0-9]*/comm')).stdout).not.toContain('sleep');
    await provider.terminate(id);
  });

  it('shares a volume between sandboxes of the account', async () => {
    const writer = await create();
    expect(await sh(writer, 'echo persisted > /workspace/note.txt')).toMatchObject({ exitCode: 0 });
    await provider.terminate(writer);

    const reader = await create();
    expect(await run(reader, ['cat', '/workspace/note.txt'])).toMatchObject({ exitCode: 0, stdout: 'persisted\n' });
    expect(readFileSync(join(dataDir, 'volumes', 'acct-a', 'work', 'note.txt'), 'utf8')).toBe('persisted\n');
    await provider.terminate(reader);
  });

  it('gives every process the sandbox env, secrets, request env and workdir, and nothing of the service', async () => {
    const id = await create({ env: { GREETING: 'hello world' }, secrets: [{ name: 'tokens', values: { SERVICE_TOKEN: "it's secret" } }] });

    const { stdout } = await run(id, ['env'], { env: { EXTRA: '1' }, secretEnv: { MODEL_KEY: 'k-123' } });
    const env = Object.fromEntries(stdout.trim().split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));

    expect(env).toMatchObject({ GREETING: 'hello world', SERVICE_TOKEN: "it's secret", EXTRA: '1', MODEL_KEY: 'k-123', HOME: '/root' });
    expect(env.PATH.split(':')).toContain('/opt/claude-code/bin');
    expect(stdout).not.toContain(ENV_MARKER);
    expect(await run(id, ['pwd'])).toMatchObject({ stdout: '/workspace\n' });
    expect(await run(id, ['pwd'], { workdir: '/tmp' })).toMatchObject({ stdout: '/tmp\n' });
    expect(await sh(id, 'command -v claude')).toMatchObject({ exitCode: 0, stdout: '/opt/claude-code/bin/claude\n' });
    await provider.terminate(id);
  });

  it('shows the Claude Code CLI in every sandbox, and a sandbox damaging its copy leaves the host binary intact', async () => {
    const claudeBin = AppConfig.fromEnvironment({}).sandbox.claudeBin;
    const sizeBefore = statSync(claudeBin).size;
    const id = await create();

    expect(await run(id, ['claude', '--version'])).toMatchObject({ exitCode: 0, stdout: expect.stringContaining('Claude Code') });
    await sh(id, ': > /opt/claude-code/bin/claude');

    expect(statSync(claudeBin).size).toBe(sizeBefore);
    await provider.terminate(id);
    const next = await create();
    expect(await run(next, ['claude', '--version'])).toMatchObject({ exitCode: 0 });
    await provider.terminate(next);
  });

  it('kills an exec at its timeout', async () => {
    const id = await create();
    const started = Date.now();

    expect(await run(id, ['sleep', '30'], { timeoutSeconds: 1 })).toMatchObject({ timedOut: true, exitCode: 124 });
    expect(Date.now() - started).toBeLessThan(5_000);
    await provider.terminate(id);
  });

  describe('network', () => {
    const network = (mode: SandboxNetwork['mode'], lists: Partial<SandboxNetwork> = {}): SandboxNetwork => ({ mode, cidrAllowlist: [], allowedDomains: [], ...lists });
    let hostListener: Server;
    let gateway: Server;
    let peer: TestPeerHost;
    const reached: string[] = [];
    const probe = (host: string, port: number) => `exec 3<>/dev/tcp/${host}/${port} && head -c 64 <&3`;

    beforeAll(async () => {
      // Listens on every host address: loopback and the host's own interfaces.
      hostListener = await listen('0.0.0.0', (socket) => {
        reached.push('host');
        socket.end('host\n');
      });
      gateway = await listen('127.0.0.1', (socket) => socket.end('gateway\n'));
      gatewayEndpoint.port = portOf(gateway);
      peer = await TestPeerHost.start();
    });
    afterAll(async () => {
      await Promise.all([hostListener, gateway].map((server) => new Promise((resolve) => server.close(resolve))));
      await peer.stop();
    });

    it.each(['internet', 'none', 'allowlist'] as const)('"%s": the host (its loopback through the NAT, its own addresses) is unreachable, the model gateway is reachable', async (mode) => {
      const id = await create({ network: network(mode, mode === 'allowlist' ? { cidrAllowlist: ['0.0.0.0/0'] } : {}) });
      const hostPort = portOf(hostListener);
      for (const address of [HOST_ADDRESS_IN_SANDBOX, ...ownHostAddresses().filter((entry) => !entry.includes(':'))]) {
        const attempt = await run(id, ['bash', '-c', probe(address, hostPort)]);
        expect({ address, exitCode: attempt.exitCode }).toEqual({ address, exitCode: 1 });
      }
      expect(reached).toEqual([]);
      expect(await run(id, ['bash', '-c', probe(HOST_ADDRESS_IN_SANDBOX, portOf(gateway))])).toMatchObject({ exitCode: 0, stdout: 'gateway\n' });
      await provider.terminate(id);
    });

    it('"internet" reaches a host outside this machine\'s networks, "none" reaches nothing but the gateway', async () => {
      const online = await create({ network: network('internet') });
      const offline = await create({ network: network('none') });
      expect(await run(online, ['bash', '-c', probe(peer.address, peer.port)])).toMatchObject({ exitCode: 0, stdout: 'peer\n' });
      expect((await run(offline, ['bash', '-c', probe(peer.address, peer.port)])).exitCode).not.toBe(0);
      expect(await run(offline, ['grep', '-c', 'tap0', '/proc/net/dev'])).toMatchObject({ exitCode: 0, stdout: '1\n' });
      await Promise.all([provider.terminate(online), provider.terminate(offline)]);
    });

    it('"allowlist" reaches only the listed CIDRs, and a listed private range stays closed', async () => {
      const id = await create({ network: network('allowlist', { cidrAllowlist: [`${peer.address}/32`, '127.0.0.0/8', '10.0.0.0/8'] }) });
      expect(await run(id, ['bash', '-c', probe(peer.address, peer.port)])).toMatchObject({ exitCode: 0, stdout: 'peer\n' });
      expect((await run(id, ['bash', '-c', probe(peer.otherAddress, peer.port)])).exitCode).not.toBe(0);
      expect((await run(id, ['bash', '-c', probe(HOST_ADDRESS_IN_SANDBOX, portOf(hostListener))])).exitCode).not.toBe(0);
      expect(reached).toEqual([]);
      await provider.terminate(id);
    });

    it('"allowlist" reaches allowed_domains through the egress proxy only: a denied name, a raw IP and a direct connection are refused', async () => {
      // The npm registry is the one outside host this machine reaches (the test host above has no name).
      const id = await create({ network: network('allowlist', { allowedDomains: ['registry.npmjs.org'] }) });
      const curl = (...args: string[]) => run(id, ['curl', '-sS', '-m', '10', '-o', '/dev/null', '-w', '%{http_code}', ...args]);
      expect(await curl('https://registry.npmjs.org/is-number')).toMatchObject({ exitCode: 0, stdout: '200' });
      const denied = await curl('https://deb.debian.org/debian/');
      expect(denied.exitCode).not.toBe(0);
      expect(denied.stderr).toMatch(/403/);
      const registryAddress = (await run(id, ['getent', 'hosts', 'registry.npmjs.org'])).stdout.split(/\s/)[0];
      expect(registryAddress).toBe('');
      const hostAddress = (await lookup('registry.npmjs.org')).address;
      expect((await curl('-k', `https://${hostAddress}/is-number`)).stderr).toMatch(/403/);
      expect((await curl('--noproxy', '*', '--resolve', `registry.npmjs.org:443:${hostAddress}`, 'https://registry.npmjs.org/is-number')).exitCode).not.toBe(0);
      await provider.terminate(id);
    });

    it('resolves names through the NAT\'s DNS forwarder, and a listener inside never appears on the host', async () => {
      const id = await create({ network: network('internet') });
      expect(await run(id, ['cat', '/etc/resolv.conf'])).toMatchObject({ stdout: `nameserver ${DNS_FORWARDER_IN_SANDBOX}\n` });
      const lookup = await run(id, ['getent', 'hosts', 'registry.npmjs.org']);
      expect(lookup).toMatchObject({ exitCode: 0, stdout: expect.stringContaining('registry.npmjs.org') });
      const listening = await provider.exec(id, { argv: ['bash', '-c', 'exec python3 -m http.server 18765 --bind 0.0.0.0 >/dev/null 2>&1'] });
      await new Promise((resolve) => setTimeout(resolve, 500));
      await expect(connectOnHost('127.0.0.1', 18765)).rejects.toThrow();
      await listening.kill();
      await provider.terminate(id);
    });

    it('cannot change its own routes or addresses (no CAP_NET_ADMIN)', async () => {
      const id = await create({ network: network('none') });
      const attempt = await run(id, ['bash', '-c', 'ip route replace default dev lo 2>&1 || ip addr add 10.9.9.9/32 dev tap0 2>&1; exit 1']);
      expect(attempt.stdout).toMatch(/Operation not permitted|not permitted|RTNETLINK answers/);
      expect(await run(id, ['ip', 'route'])).toMatchObject({ stdout: expect.stringContaining('default via 10.0.2.2 dev tap0') });
      await provider.terminate(id);
    });
  });

  describe('image steps', () => {
    const installing = [
      'ENV TOOL_HOME=/usr/local/lib/demo-tool',
      'RUN mkdir -p $TOOL_HOME && echo installed > $TOOL_HOME/marker && date +%s%N > $TOOL_HOME/built-at',
      'WORKDIR /srv/app',
    ];
    const builtAt = async (id: string) => (await sh(id, 'cat $TOOL_HOME/built-at')).stdout;

    it('runs RUN lines in the sandbox with ENV and WORKDIR applied, and caches them for the next sandbox of the account', async () => {
      const progress: unknown[] = [];
      const first = await create({ dockerfileCommands: installing, onProgress: (reported) => progress.push(reported) });

      // Only the steps that run something count: RUN, and WORKDIR's mkdir; ENV is applied without a step.
      expect(progress).toEqual([
        { phase: 'starting' },
        { phase: 'building', step: 1, steps: 2, detail: installing[1] },
        { phase: 'building', step: 2, steps: 2, detail: installing[2] },
      ]);

      expect(await sh(first, 'cat $TOOL_HOME/marker && pwd')).toMatchObject({ exitCode: 0, stdout: 'installed\n/srv/app\n' });
      expect(existsSync('/usr/local/lib/demo-tool')).toBe(false);
      const firstBuiltAt = await builtAt(first);
      expect(firstBuiltAt).toMatch(/^\d+\n$/);
      await provider.terminate(first);

      progress.length = 0;
      const second = await create({ dockerfileCommands: installing, onProgress: (reported) => progress.push(reported) });

      expect(progress).toEqual([{ phase: 'starting' }]); // every step cached: nothing is built
      expect(await builtAt(second)).toBe(firstBuiltAt);
      expect(await sh(second, 'cat $TOOL_HOME/marker && pwd')).toMatchObject({ exitCode: 0, stdout: 'installed\n/srv/app\n' });
      await provider.terminate(second);

      const otherAccount = await create({ accountId: 'acct-b', dockerfileCommands: installing });

      expect(await builtAt(otherAccount)).not.toBe(firstBuiltAt);
      await provider.terminate(otherAccount);
    });

    it('reports a failing step by index and instruction, with its output, and leaves nothing behind', async () => {
      const failing = provider.create(spec({ dockerfileCommands: ['RUN true', 'RUN echo broken >&2; exit 3'] }));

      await expect(failing).rejects.toBeInstanceOf(ImageStepFailedError);
      await expect(failing).rejects.toMatchObject({ stepIndex: 1, instruction: 'RUN echo broken >&2; exit 3', exitCode: 3, outputTail: 'broken\n' });
      expect(handedOutSandboxDirs()).toEqual([]);
    });

    it('uses a root filesystem imported under IMAGES_DIR instead of the host view', async () => {
      const image = join(dataDir, 'images', 'mini');
      for (const [from, to] of [['/usr/bin/dash', 'bin/sh'], [realpathSync('/lib64/ld-linux-x86-64.so.2'), 'lib64/ld-linux-x86-64.so.2'], [realpathSync('/lib/x86_64-linux-gnu/libc.so.6'), 'lib/x86_64-linux-gnu/libc.so.6']]) {
        mkdirSync(dirname(join(image, to)), { recursive: true });
        copyFileSync(from, join(image, to));
        chmodSync(join(image, to), 0o755);
      }
      const id = await create({ imageBase: 'mini', dockerfileCommands: ['RUN echo built > /built'] });

      expect(await sh(id, 'read line < /built; echo "$line"; echo x > /workspace/from-image')).toMatchObject({ exitCode: 0, stdout: 'built\n' });
      expect((await run(id, ['ls', '/'])).exitCode).toBe(127);
      expect(readFileSync(join(dataDir, 'volumes', 'acct-a', 'work', 'from-image'), 'utf8')).toBe('x\n');
      await provider.terminate(id);
    });

    // Pulls themselves: registry-images.e2e-spec.ts, against a loopback registry; no test reaches the internet.
    it('takes a name that is no IMAGES_DIR directory as a registry reference, refusing invalid ones', async () => {
      await expect(provider.create(spec({ imageBase: '127.0.0.1:1/no-such-image' }))).rejects.toThrow(RegistryUnavailableError);
      await expect(provider.create(spec({ imageBase: 'No Such Image' }))).rejects.toThrow(InvalidImageReferenceError);
      expect(handedOutSandboxDirs()).toEqual([]);
    });
  });

  it('keeps system changes in the sandbox overlay: installs work and vanish on terminate', async () => {
    const first = await create();
    expect(await sh(first, 'echo x > /usr/bin/demo-installed && echo y > /etc/demo.conf && ls /usr/bin/demo-installed')).toMatchObject({ exitCode: 0 });
    await provider.terminate(first);

    const second = await create();
    expect((await sh(second, 'ls /usr/bin/demo-installed || ls /etc/demo.conf')).exitCode).not.toBe(0);
    expect(existsSync('/usr/bin/demo-installed')).toBe(false);
    expect(existsSync('/etc/demo.conf')).toBe(false);
    await provider.terminate(second);
  });

  describe('isolation', () => {
    let id: string;

    beforeAll(async () => {
      id = await create();
    });
    afterAll(() => provider.terminate(id));

    it('cannot read the service data directory or another account\'s volume', async () => {
      writeFileSync(join(dataDir, 'service-secret.txt'), 'service');
      await provider.ensureVolume('acct-b', 'work');
      writeFileSync(join(dataDir, 'volumes', 'acct-b', 'work', 'theirs.txt'), 'theirs');

      // Not there at all (the host view never shows DATA_DIR), rather than there but unreadable.
      for (const path of [join(dataDir, 'service-secret.txt'), join(dataDir, 'volumes', 'acct-b', 'work', 'theirs.txt')]) {
        const attempt = await run(id, ['cat', path]);
        expect(attempt).toMatchObject({ exitCode: 1, stdout: '' });
        expect(attempt.stderr).toMatch(/No such file or directory/);
      }
      expect((await sh(id, 'ls -A /root /home | grep -v :')).stdout.trim()).toBe('');
      // its /etc/shadow is its own (package scripts add users), every password locked, nothing of the host's
      expect((await sh(id, 'cut -d: -f2 /etc/shadow | sort -u')).stdout).toBe('*\n');
    });

    it('cannot write to a host path outside its volume and overlay', async () => {
      const canary = join(dataDir, 'canary.txt');
      writeFileSync(canary, 'original');
      const passwd = readFileSync('/etc/passwd', 'utf8');

      await sh(id, `echo changed > ${canary}; echo 'intruder:x:0:0::/:/bin/sh' >> /etc/passwd; echo changed > /tmp/host-canary-${process.pid}`);

      expect(readFileSync(canary, 'utf8')).toBe('original');
      expect(readFileSync('/etc/passwd', 'utf8')).toBe(passwd);
      expect(existsSync(`/tmp/host-canary-${process.pid}`)).toBe(false);
    });

    it('sees only its own processes and cannot signal the service or read its environment', async () => {
      const pids = (await run(id, ['ls', '/proc'])).stdout.split('\n').filter((entry) => /^\d+$/.test(entry)).map(Number);

      expect(pids.length).toBeLessThan(10);
      expect(pids).not.toContain(process.pid);
      expect((await run(id, ['kill', '-0', String(process.pid)])).exitCode).not.toBe(0);
      expect((await run(id, ['cat', `/proc/${process.pid}/environ`])).exitCode).not.toBe(0);
      expect((await sh(id, 'cat /proc/*/environ 2>/dev/null | tr "\\0" "\\n"')).stdout).not.toContain(ENV_MARKER);
    });

    it('cannot change kernel settings nor unlock or replace its read-only /proc', async () => {
      const swappiness = readFileSync('/proc/sys/vm/swappiness', 'utf8').trim();

      const write = await sh(id, `echo ${swappiness} > /proc/sys/vm/swappiness`);
      expect(write.exitCode).not.toBe(0);
      expect(write.stderr).toMatch(/Permission denied|Read-only file system/);
      // The seccomp filter denies mount(2) and umount2(2) with EPERM before any permission check.
      for (const argv of [['mount', '-o', 'remount,rw', '/proc'], ['umount', '-l', '/proc'], ['mount', '-t', 'proc', 'proc', '/mnt']]) {
        const attempt = await run(id, argv);
        expect({ argv, exitCode: attempt.exitCode }).toEqual({ argv, exitCode: expect.not.stringMatching(/^0$/) });
        expect(attempt.stderr).toMatch(/[Pp]ermission denied|[Oo]peration not permitted|must be superuser/);
      }
      expect((await sh(id, 'test -w /proc/sys/vm/swappiness || echo read-only')).stdout).toBe('read-only\n');
    });

    it('kills a process that uses more memory than the limit', async () => {
      const hog = await run(id, ['node', '-e', 'Buffer.alloc(700 * 1024 * 1024, 1); console.log("allocated")']);

      expect(hog).toMatchObject({ exitCode: 137, stdout: '' });
      expect(await run(id, ['echo', 'still here'])).toMatchObject({ exitCode: 0, stdout: 'still here\n' });
    });

    it('keeps a fork bomb under the process limit while the service stays responsive', async () => {
      const bomb = await create({ timeoutSeconds: 60 });
      const execution = await provider.exec(bomb, { argv: ['/bin/sh', '-c', 'bomb() { bomb & bomb & sleep 30; }; bomb 2>/dev/null'] });
      const pidsGroup = pidsCgroupOf(hostProcessesOf(bomb)[0]);
      const observed: number[] = [];
      const lags: number[] = [];
      // At least a second, longer until forks have failed at the limit (slow on a busy host).
      for (let sample = 0; sample < 50 && (sample < 10 || forksRefused(pidsGroup) === 0); sample++) {
        const tick = Date.now();
        await new Promise((resolve) => setTimeout(resolve, 100));
        lags.push(Date.now() - tick - 100);
        observed.push(hostProcessesOf(bomb).length);
      }

      expect(forksRefused(pidsGroup)).toBeGreaterThan(0);
      expect(Math.max(...observed)).toBeLessThanOrEqual(MAX_PROCESSES);
      expect(Math.max(...lags)).toBeLessThan(1_000);

      await provider.terminate(bomb);
      expect(await execution.wait()).toMatchObject({ timedOut: false });
      expect(hostProcessesOf(bomb)).toEqual([]);
      expect(await provider.status(bomb)).toEqual({ status: 'terminated', exitReason: 'terminated' });
    });
  });

  it('terminates a sandbox at the end of its lifetime and says why', async () => {
    const id = await create({ timeoutSeconds: 1 });
    await new Promise((resolve) => setTimeout(resolve, 1_500));

    expect(await provider.status(id)).toEqual({ status: 'terminated', exitReason: 'timeout', exitCode: 124 });
    await expect(provider.exec(id, { argv: ['true'] })).rejects.toBeInstanceOf(SandboxGoneError);
    expect(hostProcessesOf(id)).toEqual([]);
  });

  it('refuses at start-up a DATA_DIR inside a directory sandboxes see', () => {
    const misplaced = new LocalSandboxProvider(AppConfig.fromEnvironment({ DATA_DIR: '/var/lib/modal-sandbox' }));

    expect(() => misplaced.assertReady()).toThrow('DATA_DIR must not lie inside /var');
  });

  it('cleans up what a previous service run left behind when reattaching', async () => {
    const leftover = join(dataDir, 'sandboxes', 'sbx-0123456789ab');
    mkdirSync(join(leftover, 'upper', 'usr'), { recursive: true });
    writeFileSync(join(leftover, 'state.json'), JSON.stringify({ initPid: process.pid, expiresAt: Date.now() + 60_000 }));

    expect(await provider.reattach('sbx-0123456789ab', spec())).toMatchObject({ status: 'terminated' });
    expect(existsSync(leftover)).toBe(false);
  });

  it('sweeps directories and cgroups of sandboxes that died with an earlier service before serving, and keeps running ones', async () => {
    const running = await provider.create(spec());
    const dead = 'sbx-00000000dead';
    mkdirSync(join(dataDir, 'sandboxes', dead, 'rw'), { recursive: true });
    writeFileSync(join(dataDir, 'sandboxes', dead, 'state.json'), JSON.stringify({ initPid: process.pid, expiresAt: Date.now() + 60_000 }));
    // Sandboxes' groups nest below those of the supervisor (named by its control socket's path).
    const supervisorPid = execFileSync('pgrep', ['-f', `${dataDir}/spawner/supervisor.sock`], { encoding: 'utf8' }).trim().split('\n')[0];
    const supervisorCgroup = readFileSync(`/proc/${supervisorPid}/cgroup`, 'utf8');
    const deadGroups = await SandboxCgroups.create(dead, { maxProcesses: 10, memoryBytes: 64 << 20, cpuCores: 1 }, { procSelfCgroup: supervisorCgroup });
    const groupDirs = deadGroups.procsFiles.map(dirname);
    expect(groupDirs.filter((dir) => existsSync(dir)).length).toBeGreaterThan(0);

    const nextInstance = new LocalSandboxProvider(AppConfig.fromEnvironment({ DATA_DIR: dataDir }));
    await nextInstance.onModuleInit();

    expect(existsSync(join(dataDir, 'sandboxes', dead))).toBe(false);
    expect(groupDirs.filter((dir) => existsSync(dir))).toEqual([]);
    expect(existsSync(join(dataDir, 'sandboxes', running.providerSandboxId))).toBe(true);
    expect((await run(running.providerSandboxId, ['true'])).exitCode).toBe(0);
    await provider.terminate(running.providerSandboxId);
  });
});
