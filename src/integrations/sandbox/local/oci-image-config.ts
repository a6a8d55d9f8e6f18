import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** What of an image's configuration the local engine applies: its environment and working directory (USER is not honoured: sandboxes run as their root). */
export interface ImageConfig {
  env: Record<string, string>;
  /** Absent when the image sets none. */
  workdir?: string;
  user?: string;
}

interface OciDescriptor {
  digest: string;
}

/** The configuration of the one image of an OCI layout (as `skopeo copy … oci:` writes it). */
export async function readImageConfig(layoutDir: string): Promise<ImageConfig> {
  const index = await readJsonBlob<{ manifests?: OciDescriptor[] }>(join(layoutDir, 'index.json'));
  const manifestDigest = index.manifests?.[0]?.digest;
  if (!manifestDigest) throw new Error(`the OCI layout ${layoutDir} holds no image`);
  const manifest = await readJsonBlob<{ config?: OciDescriptor }>(blobPath(layoutDir, manifestDigest));
  if (!manifest.config) throw new Error(`the manifest ${manifestDigest} has no config`);
  const config = await readJsonBlob<{ config?: { Env?: string[]; WorkingDir?: string; User?: string } }>(blobPath(layoutDir, manifest.config.digest));
  return imageConfigOf(config.config ?? {});
}

/** Env entries are `NAME=value`; an entry without `=` sets nothing. */
export function imageConfigOf(config: { Env?: string[]; WorkingDir?: string; User?: string }): ImageConfig {
  const env: Record<string, string> = {};
  for (const entry of config.Env ?? []) {
    const separator = entry.indexOf('=');
    if (separator > 0) env[entry.slice(0, separator)] = entry.slice(separator + 1);
  }
  return { env, ...(config.WorkingDir ? { workdir: config.WorkingDir } : {}), ...(config.User ? { user: config.User } : {}) };
}

function blobPath(layoutDir: string, digest: string): string {
  const [algorithm, hex] = digest.split(':');
  if (!/^[a-z0-9]+$/.test(algorithm) || !/^[a-f0-9]+$/.test(hex ?? '')) throw new Error(`not a digest: ${digest}`);
  return join(layoutDir, 'blobs', algorithm, hex);
}

async function readJsonBlob<T>(path: string): Promise<T> {
  return JSON.parse(await readFile(path, 'utf8')) as T;
}
