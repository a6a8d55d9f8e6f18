import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { DomainError } from '../../../common/domain-error';
import { ImagePullRefusedError, RegistryUnavailableError } from '../sandbox-provider.errors';

/** Runs a program with exactly `env`; rejects with its stderr when it fails or outlives `timeoutMs`. */
export type ToolRunner = (file: string, args: string[], options: { env: Record<string, string>; timeoutMs: number }) => Promise<{ stdout: Buffer; stderr: string }>;

export class ToolFailure extends Error {
  constructor(readonly stderr: string, readonly timedOut: boolean) {
    super(stderr);
  }
}

/** How one registry is spoken to. */
export interface RegistryAccess {
  /** false for loopback and REGISTRY_INSECURE registries: plain HTTP, or HTTPS without verification. */
  tlsVerify: boolean;
  /** containers-auth.json / Docker config.json; without it, anonymous. */
  authFile?: string;
}

export interface Platform {
  os: string;
  architecture: string;
}

const INSPECT_TIMEOUT_MS = 60_000;
const PULL_TIMEOUT_MS = 30 * 60_000;
const MESSAGE_TAIL_CHARS = 600;
/** The registry was not reached at all: network, DNS, TLS. */
const UNREACHABLE = /dial tcp|connection refused|connection reset|no such host|i\/o timeout|network is unreachable|TLS handshake|x509:|EOF$/i;

export const execRunner: ToolRunner = (file, args, { env, timeoutMs }) =>
  new Promise((resolve, reject) => {
    execFile(file, args, { env, timeout: timeoutMs, encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error) reject(new ToolFailure(stderr.toString('utf8') || error.message, error.killed === true));
      else resolve({ stdout, stderr: stderr.toString('utf8') });
    });
  });

/**
 * skopeo (registry protocol, auth, digest verification) and umoci (layer unpacking: whiteouts, hard
 * links, modes, owners, xattrs). Each runs with only PATH and a HOME of its own, so no credentials or
 * registry settings of the service's user are read besides the configured auth file.
 */
export class RegistryTools {
  constructor(
    private readonly bins: { skopeo: string; umoci: string },
    private readonly files: { home: string; policy: string },
    private readonly run: ToolRunner = execRunner,
  ) {}

  /** The digest of the manifest (or index) `source` names now: sha256 of its bytes as the registry serves them. */
  async manifestDigest(image: string, source: string, access: RegistryAccess): Promise<string> {
    const { stdout } = await this.skopeo(image, ['inspect', '--raw', `--tls-verify=${access.tlsVerify}`, ...authArgs(access), source], INSPECT_TIMEOUT_MS);
    return `sha256:${createHash('sha256').update(stdout).digest('hex')}`;
  }

  /** Copies the image for `platform` into an OCI layout; skopeo checks the manifest against a pinned digest and every blob against its digest. */
  async copy(image: string, source: string, destination: string, access: RegistryAccess, platform: Platform): Promise<void> {
    const platformArgs = ['--override-os', platform.os, '--override-arch', platform.architecture];
    await this.skopeo(image, [...platformArgs, 'copy', '--quiet', `--src-tls-verify=${access.tlsVerify}`, ...authArgs(access), source, destination], PULL_TIMEOUT_MS);
  }

  /** Applies the layers in order into `<bundle>/rootfs`, owners as the image has them (umoci runs as root). */
  async unpack(image: string, layoutImage: string, bundle: string): Promise<void> {
    try {
      await this.run(this.bins.umoci, ['unpack', '--image', layoutImage, bundle], { env: this.env(), timeoutMs: PULL_TIMEOUT_MS });
    } catch (error) {
      throw new ImagePullRefusedError(image, 'not_found', `could not be unpacked: ${messageOf(error)}`);
    }
  }

  private async skopeo(image: string, args: string[], timeoutMs: number): Promise<{ stdout: Buffer }> {
    try {
      return await this.run(this.bins.skopeo, ['--policy', this.files.policy, ...args], { env: this.env(), timeoutMs });
    } catch (error) {
      throw registryError(image, error);
    }
  }

  private env(): Record<string, string> {
    return { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: this.files.home, TMPDIR: this.files.home };
  }
}

function authArgs(access: RegistryAccess): string[] {
  return access.authFile ? ['--authfile', access.authFile] : [];
}

/** The domain error a failed skopeo call stands for: the reference's fault (4xx) or the registry's (503). */
export function registryError(image: string, error: unknown): DomainError {
  const message = messageOf(error);
  const timedOut = error instanceof ToolFailure && error.timedOut;
  if (timedOut) return new RegistryUnavailableError(image, 'the registry did not answer in time');
  if (/HTTP response to HTTPS client/i.test(message)) return new RegistryUnavailableError(image, `the registry speaks plain HTTP; list its host:port in REGISTRY_INSECURE to allow that: ${message}`);
  if (UNREACHABLE.test(message)) return new RegistryUnavailableError(image, message);
  if (/manifest unknown|name unknown|not found|\b404\b/i.test(message)) return new ImagePullRefusedError(image, 'not_found', `does not exist in its registry: ${message}`);
  if (/unauthorized|authentication required|denied|\b40[13]\b|invalid username\/password/i.test(message)) {
    return new ImagePullRefusedError(image, 'unauthorized', `was refused by its registry (credentials missing or not accepted; see REGISTRY_AUTH_FILE): ${message}`);
  }
  if (/digest|does not match/i.test(message)) return new ImagePullRefusedError(image, 'digest_mismatch', `does not match its digest: ${message}`);
  if (/no image found in (image index|manifest list)|no matching manifest|platform/i.test(message)) return new ImagePullRefusedError(image, 'no_platform', `has no build for this host's platform: ${message}`);
  return new RegistryUnavailableError(image, message);
}

/** skopeo's `level=fatal msg="…"` text without its quoting, any URL credentials and its long prefix. */
function messageOf(error: unknown): string {
  const raw = error instanceof ToolFailure ? error.stderr : error instanceof Error ? error.message : String(error);
  const fatal = /msg="((?:[^"\\]|\\.)*)"/.exec(raw);
  const text = fatal ? fatal[1].replace(/\\(.)/g, '$1') : raw;
  return text
    .replace(/^Error parsing image name "[^"]*": /, '')
    .replace(/\/\/[^/@\s]+:[^/@\s]+@/g, '//***@')
    .trim()
    .slice(-MESSAGE_TAIL_CHARS);
}
