import { InvalidImageReferenceError } from '../sandbox-provider.errors';

/** An OCI/Docker image reference, fully qualified as `docker pull` reads it. */
export interface ImageReference {
  /** What the request said, for messages. */
  text: string;
  /** Registry host[:port]; docker.io when the reference names none. */
  registry: string;
  /** Repository path in the registry (`library/alpine` for Docker Hub's official images). */
  repository: string;
  /** Absent when only a digest is given. */
  tag?: string;
  /** `sha256:<64 hex>` when the reference pins one. */
  digest?: string;
}

const DOCKER_HUB = 'docker.io';
const DEFAULT_TAG = 'latest';
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const REGISTRY = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;
const MAX_NAME_LENGTH = 255;

/**
 * Parses `[registry/]repository[:tag][@sha256:…]` with Docker's defaults: Docker Hub when the first
 * component is no host (no `.` or `:`, not `localhost`), `library/` for its one-component names, `latest`.
 */
export function parseImageReference(text: string): ImageReference {
  const fail = (reason: string) => new InvalidImageReferenceError(text, reason);
  const [namePart, digest, ...extra] = text.split('@');
  if (extra.length > 0) throw fail('more than one "@"');
  if (digest !== undefined && !DIGEST.test(digest)) throw fail('a digest must be sha256: followed by 64 lowercase hex digits');
  const lastSlash = namePart.lastIndexOf('/');
  const tagSeparator = namePart.lastIndexOf(':');
  const hasTag = tagSeparator > lastSlash;
  const name = hasTag ? namePart.slice(0, tagSeparator) : namePart;
  const tag = hasTag ? namePart.slice(tagSeparator + 1) : undefined;
  if (tag !== undefined && !TAG.test(tag)) throw fail(`invalid tag ${JSON.stringify(tag)}`);
  if (name === '' || name.length > MAX_NAME_LENGTH) throw fail('the repository name is empty or too long');
  const components = name.split('/');
  const first = components[0];
  const namesRegistry = components.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost');
  const registry = namesRegistry ? first.toLowerCase() : DOCKER_HUB;
  if (!REGISTRY.test(registry)) throw fail(`invalid registry ${JSON.stringify(registry)}`);
  const path = namesRegistry ? components.slice(1) : components;
  if (path.some((component) => !PATH_COMPONENT.test(component))) throw fail('repository names are lowercase letters, digits and separators (. _ __ -) between them');
  const repository = registry === DOCKER_HUB && path.length === 1 ? `library/${path[0]}` : path.join('/');
  return { text, registry, repository, tag: tag ?? (digest ? undefined : DEFAULT_TAG), digest };
}

/** `registry/repository:tag` or `registry/repository@digest`: one cache entry per canonical reference. */
export function canonicalReference(reference: ImageReference): string {
  const name = `${reference.registry}/${reference.repository}`;
  return reference.digest ? `${name}@${reference.digest}` : `${name}:${reference.tag}`;
}

/** The same repository pinned to `digest`. */
export function pinnedReference(reference: ImageReference, digest: string): string {
  return `${reference.registry}/${reference.repository}@${digest}`;
}

/**
 * Whether TLS may be skipped for the registry (HTTP, or HTTPS without verification): as Docker does,
 * for loopback registries, and for those the operator lists in REGISTRY_INSECURE (host:port).
 */
export function isInsecureRegistry(registry: string, insecure: readonly string[]): boolean {
  const host = registry.replace(/:[0-9]+$/, '').replace(/^\[|\]$/g, '');
  const loopback = host === 'localhost' || host === '::1' || /^127(?:\.[0-9]{1,3}){3}$/.test(host);
  return loopback || insecure.some((entry) => entry.toLowerCase() === registry);
}
