import { CLAUDE_STATE_DIR } from '../../integrations/claude/claude-cli.agent';
import type { VolumeEntry } from '../../integrations/sandbox/sandbox-provider';

/**
 * Where the Claude Code CLI keeps conversations, relative to the volume root: one folder per working
 * directory under `.claude-state/projects/`, one transcript `<session id>.jsonl` per conversation.
 * `--resume=<id>` needs that transcript on the volume, or the CLI fails the run.
 */
export const CLAUDE_PROJECTS_DIR = `${CLAUDE_STATE_DIR}/projects`;

/** The CLI shortens longer folder names with a hash of its own: such folders are not looked for. */
const MAX_PROJECT_DIR_NAME = 200;
/** Session ids are the CLI's lowercase UUIDs; nothing else found on the volume is ever passed to `--resume`. */
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TRANSCRIPT_SUFFIX = '.jsonl';

export function isSessionId(value: string): boolean {
  return SESSION_ID.test(value);
}

/** The CLI's folder for a working directory (every character but ASCII letters and digits becomes '-'), or null when the CLI would hash it. */
export function projectDirOf(workdir: string): string | null {
  const name = workdir.replace(/[^a-zA-Z0-9]/g, '-');
  return name.length <= MAX_PROJECT_DIR_NAME ? `${CLAUDE_PROJECTS_DIR}/${name}` : null;
}

export function transcriptPath(projectDir: string, sessionId: string): string {
  return `${projectDir}/${sessionId}${TRANSCRIPT_SUFFIX}`;
}

/** The session whose transcript the entry is: a non-empty regular file (never a link) named `<session id>.jsonl`. */
export function sessionIdOfTranscript(entry: VolumeEntry): string | null {
  if (entry.type !== 'file' || entry.size === 0 || !entry.name.endsWith(TRANSCRIPT_SUFFIX)) return null;
  const sessionId = entry.name.slice(0, -TRANSCRIPT_SUFFIX.length);
  return isSessionId(sessionId) ? sessionId : null;
}
