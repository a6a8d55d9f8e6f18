import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function listen(host: string, onConnection: (socket: Socket) => void): Promise<Server> {
  const server = createServer(onConnection);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve(server));
  });
}

export function portOf(server: Server): number {
  return (server.address() as { port: number }).port;
}

/** Resolves once a TCP connection from the host succeeds, rejects when it is refused. */
export function connectOnHost(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, timeout: 2000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('timeout', () => reject(new Error('timed out')));
    socket.once('error', reject);
  });
}

/**
 * A host outside this machine's networks, made by the test: a network namespace joined to the host
 * by a veth pair, with two addresses from TEST-NET-2 (a /29 of 198.51.100.0/24; none of the ranges a sandbox
 * is kept from), each answering "peer" on one TCP port. Sandboxes reach it through their NAT like
 * any internet host, and no traffic leaves this machine.
 */
export class TestPeerHost {
  private constructor(
    /** A process holding the peer's network namespace (`unshare --net`); its namespace dies with it. */
    private readonly holder: ChildProcess,
    private readonly server: ChildProcess,
    private readonly hostLink: string,
    readonly address: string,
    readonly otherAddress: string,
    readonly port: number,
    private readonly slot: number,
  ) {}

  static async start(): Promise<TestPeerHost> {
    const slot = claimSlot(); // one /29 per peer: parallel jest workers never share a subnet
    const [hostSide, address, otherAddress] = [1, 2, 3].map((last) => `198.51.100.${slot * 8 + last}`);
    const hostLink = hostLinkName(process.pid, slot);
    // Unnamed namespaces: `ip netns add` races with itself when several processes set up /run/netns at once.
    const holder = spawn('unshare', ['--net', 'sleep', 'infinity'], { stdio: 'ignore' });
    try {
      await untilOwnNetworkNamespace(holder.pid!);
      return await TestPeerHost.make(holder, hostLink, { hostSide, address, otherAddress }, slot);
    } catch (error) {
      holder.kill('SIGKILL');
      deleteLink(hostLink);
      releaseSlot(slot);
      throw error;
    }
  }

  private static async make(holder: ChildProcess, hostLink: string, addresses: { hostSide: string; address: string; otherAddress: string }, slot: number): Promise<TestPeerHost> {
    const { hostSide, address, otherAddress } = addresses;
    const pid = String(holder.pid);
    const peerLink = 'peer0';
    const onHost = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
    const inPeer = (...args: string[]) => execFileSync('nsenter', ['-t', pid, '-n', 'ip', ...args], { stdio: 'pipe' });
    onHost('link', 'add', hostLink, 'type', 'veth', 'peer', 'name', peerLink, 'netns', pid);
    onHost('addr', 'add', `${hostSide}/29`, 'dev', hostLink);
    onHost('link', 'set', hostLink, 'up');
    inPeer('addr', 'add', `${address}/29`, 'dev', peerLink);
    inPeer('addr', 'add', `${otherAddress}/29`, 'dev', peerLink);
    inPeer('link', 'set', peerLink, 'up');
    inPeer('link', 'set', 'lo', 'up');
    inPeer('route', 'add', 'default', 'via', hostSide);
    const port = 17000 + slot;
    const script = `require('net').createServer((s) => s.end('peer\\n')).listen(${port}, '0.0.0.0', () => console.log('listening'))`;
    const server = spawn('nsenter', ['-t', pid, '-n', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      server.stdout!.once('data', () => resolve());
      server.once('exit', (code) => reject(new Error(`the peer's server exited with ${code}`)));
    });
    return new TestPeerHost(holder, server, hostLink, address, otherAddress, port, slot);
  }

  /**
   * A listening TCP socket inside the peer's namespace (on all its addresses), handed to this process
   * over IPC: a server here can accept on it, so sandboxes reach this process as an outside host.
   */
  async listeningSocket(): Promise<Server> {
    const script = "const s = require('net').createServer(); s.listen(0, '0.0.0.0', () => process.send('listening', s, () => process.exit(0)))";
    const child = spawn('nsenter', ['-t', String(this.holder.pid), '-n', process.execPath, '-e', script], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    return new Promise((resolve, reject) => {
      child.once('message', (_message, handle) => resolve(handle as Server));
      child.once('exit', (code) => reject(new Error(`no socket from the peer (exit ${code})`)));
    });
  }

  async stop(): Promise<void> {
    this.server.kill('SIGKILL');
    this.holder.kill('SIGKILL');
    deleteLink(this.hostLink);
    releaseSlot(this.slot);
  }
}

function hostLinkName(pid: number, slot: number): string {
  return `mssp${pid}s${slot}`;
}

function deleteLink(name: string): void {
  try {
    execFileSync('ip', ['link', 'del', name], { stdio: 'pipe' });
  } catch {
    // gone with its namespace, or never made
  }
}

async function untilOwnNetworkNamespace(pid: number): Promise<void> {
  const own = readlinkSync('/proc/self/ns/net');
  for (let attempt = 0; attempt < 500; attempt++) {
    const theirs = (() => {
      try {
        return readlinkSync(`/proc/${pid}/ns/net`);
      } catch {
        return own;
      }
    })();
    if (theirs !== own) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error('the peer got no network namespace');
}

const SLOTS = 32;
const slotDir = (slot: number) => join(tmpdir(), `mss-peer-slot-${slot}`);

/** A free /29 among 32, claimed by renaming a directory holding our pid onto it (atomic); a claim whose process is gone is taken over. */
function claimSlot(): number {
  const claim = join(tmpdir(), `mss-peer-claim-${process.pid}`);
  for (let slot = 0; slot < SLOTS; slot++) {
    rmSync(claim, { recursive: true, force: true });
    mkdirSync(claim);
    writeFileSync(join(claim, 'pid'), String(process.pid));
    try {
      renameSync(claim, slotDir(slot));
      return slot;
    } catch {
      if (!existsSync(join(slotDir(slot), 'pid'))) continue; // released meanwhile, or another claim mid-rename
      const owner = Number(readFileSync(join(slotDir(slot), 'pid'), { encoding: 'utf8', flag: 'r' }).trim() || 0);
      if (owner > 0 && isAlive(owner)) continue;
      deleteLink(hostLinkName(owner, slot)); // a killed test left its peer: its subnet must not be on two links
      rmSync(slotDir(slot), { recursive: true, force: true });
      slot--; // try the same slot again
    }
  }
  throw new Error('no free test peer subnet');
}

function releaseSlot(slot: number): void {
  rmSync(slotDir(slot), { recursive: true, force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
