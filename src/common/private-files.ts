import type { LoggerService } from '@nestjs/common';
import { chmodSync, lstatSync, mkdirSync, readdirSync, statSync, type Stats } from 'node:fs';
import { join } from 'node:path';

const OWNER_ONLY_UMASK = 0o077;
const PRIVATE_DIR_MODE = 0o700;
const PRIVATE_FILE_MODE = 0o600;
const GROUP_OTHER_BITS = 0o077;

/**
 * What the service itself keeps under DATA_DIR. The sandbox engine's subtrees (volumes, sandboxes,
 * rootfs, image-cache) are left alone: it sets their owners and modes for what sandboxes need.
 */
const SERVICE_ENTRIES = ['pglite', 'jwt-secret'];

/** Group and other get no access to anything the process creates from now on. */
export function useOwnerOnlyUmask(): void {
  process.umask(OWNER_ONLY_UMASK);
}

export function makePrivateDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: PRIVATE_DIR_MODE });
}

/**
 * Creates DATA_DIR owner-only, or restricts an existing one, and restricts the service's own files
 * in it that earlier versions left open to other local users. Logs whatever it had to change.
 */
export function ensurePrivateDataDir(dir: string, logger: LoggerService): void {
  makePrivateDir(dir);
  restrictDataDir(dir, logger);
  restrictServiceEntries(dir, logger);
}

/** Restricts `path` and, for a directory, everything below it; returns how many entries it changed. */
export function restrictToOwner(path: string): number {
  const stats = lstatIfExists(path);
  if (!stats || stats.isSymbolicLink()) return 0;
  const changed = restrictEntry(path, stats) ? 1 : 0;
  if (!stats.isDirectory()) return changed;
  return childrenOf(path).reduce((total, child) => total + restrictToOwner(join(path, child)), changed);
}

function restrictDataDir(dir: string, logger: LoggerService): void {
  const previousMode = statSync(dir).mode & 0o7777;
  if ((previousMode & GROUP_OTHER_BITS) === 0) return;
  chmodSync(dir, PRIVATE_DIR_MODE);
  logger.warn({ path: dir, previous_mode: octal(previousMode), mode: octal(PRIVATE_DIR_MODE) }, 'DATA_DIR was open to other local users; restricted it to its owner');
}

function restrictServiceEntries(dir: string, logger: LoggerService): void {
  const paths = SERVICE_ENTRIES.map((entry) => join(dir, entry));
  const changed = paths.reduce((total, path) => total + restrictToOwner(path), 0);
  if (changed === 0) return;
  logger.warn({ paths, entries_changed: changed }, 'service files under DATA_DIR were open to other local users; restricted them to their owner');
}

function restrictEntry(path: string, stats: Stats): boolean {
  if ((stats.mode & GROUP_OTHER_BITS) === 0) return false;
  const privateMode = stats.isDirectory() ? PRIVATE_DIR_MODE : PRIVATE_FILE_MODE;
  // PGlite may remove a file (temporary stats, old WAL) between the listing and the chmod.
  ignoreVanished(() => chmodSync(path, privateMode));
  return true;
}

function childrenOf(dir: string): string[] {
  return ignoreVanished(() => readdirSync(dir)) ?? [];
}

function lstatIfExists(path: string): Stats | undefined {
  return ignoreVanished(() => lstatSync(path));
}

function ignoreVanished<T>(operation: () => T): T | undefined {
  try {
    return operation();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function octal(mode: number): string {
  return `0${mode.toString(8)}`;
}
