import { NotFoundError, UpstreamError } from '../../common/domain-error';
import type { FileFailure, SnapshotStats } from './snapshot.types';

/** Failures named in an error message; the full list is in the details. */
const NAMED_IN_MESSAGE = 5;

function describeFailures(failures: FileFailure[]): string {
  const named = failures.slice(0, NAMED_IN_MESSAGE).map((failure) => `${failure.path}: ${failure.error}`).join('; ');
  return failures.length > NAMED_IN_MESSAGE ? `${named}; and ${failures.length - NAMED_IN_MESSAGE} more` : named;
}

/** Some files could not be stored; the version was not committed and the previous latest stays latest. */
export class SnapshotFailedError extends UpstreamError {
  constructor(readonly stats: SnapshotStats) {
    super(`snapshot failed, version ${stats.version} not committed: ${describeFailures(stats.errors)}`, { stats });
  }
}

/** Some entries could not be restored; every other entry of the version was restored. */
export class RestoreFailedError extends UpstreamError {
  constructor(readonly version: number, readonly failures: FileFailure[]) {
    super(`restore of version ${version} failed for ${failures.length} entr${failures.length === 1 ? 'y' : 'ies'}: ${describeFailures(failures)}`, {
      version,
      failures,
    });
  }
}

export class SnapshotVersionNotFoundError extends NotFoundError {
  constructor(version: number) {
    super(`snapshot version ${version} does not exist (or was never committed)`, { version });
  }
}

export class CorruptManifestError extends UpstreamError {
  constructor(version: number, problem: string) {
    super(`the manifest of snapshot version ${version} is unusable: ${problem}`, { version });
  }
}
