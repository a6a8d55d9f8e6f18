import { InvalidInputError } from './domain-error';

const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;
const MAX_KEY_PREFIX_LENGTH = 512;

/** Refuses key prefixes that could climb out of, or hide inside, another prefix. */
export function assertSafeKeyPrefix(prefix: string): void {
  if (prefix.length > MAX_KEY_PREFIX_LENGTH) throw new InvalidInputError(`key prefix is longer than ${MAX_KEY_PREFIX_LENGTH} characters`);
  if (CONTROL_CHARACTERS.test(prefix)) throw new InvalidInputError('key prefix contains control characters');
  if (prefix.startsWith('/')) throw new InvalidInputError("key prefix must not start with '/'");
  const segments = prefix.split('/');
  if (prefix.endsWith('/')) segments.pop();
  if (prefix !== '' && segments.some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw new InvalidInputError("key prefix must not contain '..', '.' or empty segments");
  }
}

/**
 * A key prefix as a folder: '' or ending in '/'. Snapshots and bucket mounts both append the account
 * to it, and must agree: "projects" means `projects/<account>/`, never `projects<account>/`.
 */
export function normalizeKeyPrefix(prefix: string): string {
  return prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
}

/** The folder of one account below a key prefix, where its snapshots live and what a bucket mount shows. */
export function accountKeyBase(keyPrefix: string, accountId: string): string {
  return `${normalizeKeyPrefix(keyPrefix)}${accountId}/`;
}
