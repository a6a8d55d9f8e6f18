import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, copyFileSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const STARTUP_TIMEOUT_MS = 15_000;
/** Debian's distribution v2 registry (package docker-registry); htpasswd is apache2-utils'. */
const REGISTRY_BIN = '/usr/bin/docker-registry';
const BUSYBOX_BIN = '/bin/busybox';
const BUSYBOX_APPLETS = ['sh', 'ls', 'cat', 'echo', 'rm', 'test', 'stat', 'mkdir', 'pwd', 'env', 'id', 'touch', 'sleep', 'true', 'false'];

/**
 * A registry on 127.0.0.1 (a free port) backed by a temporary directory, optionally with htpasswd
 * basic auth; its access log tells which manifests and blobs were fetched.
 */
export class OciRegistry {
  private output = '';

  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    readonly host: string,
    readonly credentials?: { username: string; password: string },
  ) {
    const collect = (chunk: Buffer) => (this.output += chunk.toString());
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
  }

  static async start(options: { credentials?: { username: string; password: string } } = {}): Promise<OciRegistry> {
    const dir = mkdtempSync(join(tmpdir(), 'oci-registry-'));
    const port = await freePort();
    const auth = options.credentials ? await writeHtpasswd(dir, options.credentials) : '';
    const config = join(dir, 'config.yml');
    writeFileSync(config, `version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: ${join(dir, 'storage')}\nhttp:\n  addr: 127.0.0.1:${port}\n${auth}`);
    const child = spawn(REGISTRY_BIN, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    const registry = new OciRegistry(child, dir, `127.0.0.1:${port}`, options.credentials);
    await registry.ready();
    return registry;
  }

  /** Lines of the access log for GET requests whose path contains `fragment` (e.g. `/blobs/`). */
  fetches(fragment: string): number {
    return this.output.split('\n').filter((line) => line.includes('"GET /v2/') && line.includes(fragment)).length;
  }

  /** An auth file (containers-auth.json format) with this registry's credentials. */
  writeAuthFile(path: string): string {
    const { username, password } = this.credentials!;
    writeFileSync(path, JSON.stringify({ auths: { [this.host]: { auth: Buffer.from(`${username}:${password}`).toString('base64') } } }), { mode: 0o600 });
    return path;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = once(this.child, 'exit');
      this.child.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async ready(): Promise<void> {
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (this.child.exitCode !== null) throw new Error(`the registry exited: ${this.output}`);
      const answered = await fetch(`http://${this.host}/v2/`).then(() => true, () => false);
      if (answered) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`the registry did not start: ${this.output}`);
  }
}

export interface PushedImage {
  /** `host/repository:tag` */
  tag: string;
  /** `host/repository@sha256:…` */
  pinned: string;
  digest: string;
}

/** Incompressible bulk added on top of the test image (benchmarks): random files in layers of their own. */
export interface ImagePayload {
  /** Total size of the random files, in MiB. */
  mebibytes: number;
  /** How many files, spread evenly over the layers. */
  files: number;
  /** How many layers, each under /payload/<layer>/. */
  layers: number;
}

/**
 * Test images made from Debian's static busybox, without the internet, as an OCI layout:
 * layer 1 holds busybox, its applets, /etc/os-release and /etc/gone.txt; layer 2 deletes
 * /etc/gone.txt (a whiteout) and adds /data/original with a hard link /data/linked. The config sets
 * ENV and WORKDIR. `variant` changes the config only: another digest with the same layers.
 * With `payload`, further layers of random files follow (a larger image, for the benchmarks).
 */
export class TestImages {
  private constructor(private readonly dir: string) {}

  static async build(options: { payload?: ImagePayload } = {}): Promise<TestImages> {
    const images = new TestImages(mkdtempSync(join(tmpdir(), 'oci-images-')));
    const layout = images.layout;
    const bundle = join(images.dir, 'bundle');
    await umoci(['init', '--layout', layout]);
    await umoci(['new', '--image', `${layout}:empty`]);
    await umoci(['unpack', '--image', `${layout}:empty`, bundle]);
    const rootfs = join(bundle, 'rootfs');
    for (const dir of ['bin', 'etc', 'srv', 'data']) mkdirSync(join(rootfs, dir), { recursive: true });
    copyFileSync(BUSYBOX_BIN, join(rootfs, 'bin', 'busybox'));
    chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
    for (const applet of BUSYBOX_APPLETS) symlinkSync('busybox', join(rootfs, 'bin', applet));
    writeFileSync(join(rootfs, 'etc', 'os-release'), 'NAME="Busybox test image"\nID=busybox\n');
    writeFileSync(join(rootfs, 'etc', 'gone.txt'), 'deleted in layer 2\n');
    await umoci(['repack', '--refresh-bundle', '--image', `${layout}:layer1`, bundle]);
    unlinkSync(join(rootfs, 'etc', 'gone.txt'));
    writeFileSync(join(rootfs, 'data', 'original'), 'linked content\n');
    linkSync(join(rootfs, 'data', 'original'), join(rootfs, 'data', 'linked'));
    await umoci(['repack', ...(options.payload ? ['--refresh-bundle'] : []), '--image', `${layout}:layered`, bundle]);
    if (options.payload) await addPayload(layout, rootfs, bundle, options.payload);
    await umoci(['config', '--image', `${layout}:layered`, '--config.env', 'PATH=/bin', '--config.env', 'IMAGE_GREETING=from-image-config', '--config.workingdir', '/srv']);
    return images;
  }

  private get layout(): string {
    return join(this.dir, 'layout');
  }

  /** Pushes the layered image (with `variant` as an extra ENV, so another digest) to `repository:tag` of the registry. */
  async push(registry: OciRegistry, repository: string, tag: string, variant?: string): Promise<PushedImage> {
    let source = 'layered';
    if (variant) {
      source = `variant-${variant}`;
      await umoci(['config', '--image', `${this.layout}:layered`, '--tag', source, '--config.env', `VARIANT=${variant}`]);
    }
    const digestFile = join(this.dir, `digest-${repository.replace(/\W/g, '_')}-${tag}`);
    const credentials = registry.credentials ? ['--dest-creds', `${registry.credentials.username}:${registry.credentials.password}`] : [];
    await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', ...credentials, '--digestfile', digestFile, `oci:${this.layout}:${source}`, `docker://${registry.host}/${repository}:${tag}`]);
    const digest = readFileSync(digestFile, 'utf8').trim();
    return { tag: `${registry.host}/${repository}:${tag}`, pinned: `${registry.host}/${repository}@${digest}`, digest };
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function addPayload(layout: string, rootfs: string, bundle: string, payload: ImagePayload): Promise<void> {
  const perFile = Math.floor((payload.mebibytes * 1024 * 1024) / payload.files);
  for (let layer = 0; layer < payload.layers; layer++) {
    const dir = join(rootfs, 'payload', String(layer));
    mkdirSync(dir, { recursive: true });
    const files = Math.floor(payload.files / payload.layers) + (layer < payload.files % payload.layers ? 1 : 0);
    for (let file = 0; file < files; file++) writeFileSync(join(dir, `blob-${file}.bin`), randomBytes(perFile));
    await umoci(['repack', '--refresh-bundle', '--image', `${layout}:layered`, bundle]);
  }
}

async function umoci(args: string[]): Promise<void> {
  await run('umoci', args);
}

async function writeHtpasswd(dir: string, { username, password }: { username: string; password: string }): Promise<string> {
  const { stdout } = await run('htpasswd', ['-Bbn', username, password]);
  const file = join(dir, 'htpasswd');
  writeFileSync(file, stdout);
  return `auth:\n  htpasswd:\n    realm: test-registry\n    path: ${file}\n`;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
