import { posix } from 'node:path';

/**
 * Where, inside the sandbox, each run keeps what outlives the service: the agent's stdout and
 * stderr as append-only files, the pid of the run's process group leader and the agent's exit
 * code. It is in the sandbox's own filesystem, never on the volume (snapshots do not carry it).
 */
export const RUN_LOG_ROOT = '/run/claude-runs';

/** Waits (at most 10 s) for the wrapper to write its pid, which it does first thing. */
const UNTIL_PID_FILE = 'n=0; while [ ! -s "$d/pid" ]; do n=$((n + 1)); [ "$n" -le 1000 ] || { echo "the run did not start" >&2; exit 126; }; sleep 0.01; done';

/** Follows `$f` from byte `$from` while the agent (`$pid`) runs, with any POSIX shell, tail and cat. */
const PORTABLE_FOLLOWER = [
  'exec 3< "$f"; tail -c "+$from" <&3',
  'while kill -0 "$pid" 2> /dev/null && [ ! -e "$d/exit" ]; do sleep 0.05 2> /dev/null || sleep 1; cat <&3; done',
  'cat <&3',
].join('; ');

/** The line the wrapper appends to both logs once the agent has ended, with its exit code. */
const END_OF_RUN = 'claude-run-ended';
const END_OF_RUN_LINE = new RegExp(`^${END_OF_RUN} (\\d+)$`);

/** The agent's exit code when `line` is the wrapper's end-of-run line. */
export function endOfRunCode(line: string): number | undefined {
  const match = END_OF_RUN_LINE.exec(line);
  return match ? Number(match[1]) : undefined;
}

export type LogStream = 'stdout' | 'stderr';

/** How far the service has read each of a run's logs, in bytes. */
export interface LogOffsets {
  stdout: number;
  stderr: number;
}

export function runLogDir(runId: string): string {
  if (!/^[A-Za-z0-9-]{1,64}$/.test(runId)) throw new Error(`not a run id: ${runId}`);
  return posix.join(RUN_LOG_ROOT, runId);
}

/**
 * argv that starts `command` detached inside the sandbox and returns at once: the agent runs in a
 * session of its own (so the exec that started it, and the service, may go away), its output goes
 * to the run's log files and its exit code to `exit` when it ends. Refuses to start a run twice.
 */
export function startArgv(dir: string, command: string[]): string[] {
  const wrapper = [
    'd=$1; shift',
    'echo $$ > "$d/pid.tmp" && mv "$d/pid.tmp" "$d/pid"',
    '"$@" >> "$d/stdout" 2>> "$d/stderr" < /dev/null &',
    'wait $!; code=$?',
    // The followers learn of the end from the logs themselves (at once), not by polling the pid.
    `printf "\\n${END_OF_RUN} %s\\n" "$code" >> "$d/stdout"; printf "\\n${END_OF_RUN} %s\\n" "$code" >> "$d/stderr"`,
    'echo "$code" > "$d/exit.tmp" && mv "$d/exit.tmp" "$d/exit"',
  ].join('\n');
  const starter = [
    'set -e',
    'd=$1; shift',
    'mkdir -p -m 700 "$d"',
    '[ ! -e "$d/started" ] || { echo "run already started" >&2; exit 125; }',
    ': > "$d/started"',
    // The logs exist before anyone may follow them (a follower waits only for the pid file).
    ': > "$d/stdout" && : > "$d/stderr"',
    // setsid: a background job is no group leader, so setsid makes it a session leader in place (no fork).
    `setsid /bin/sh -c '${wrapper}' sh "$d" "$@" > /dev/null 2>&1 < /dev/null &`,
    // The exec ends once the agent is known to run: its pid file is the proof.
    UNTIL_PID_FILE,
  ].join('\n');
  return ['/bin/sh', '-c', starter, 'sh', dir, ...command];
}

/**
 * argv that prints one of the run's logs from byte `offset` as it grows, until the agent has
 * ended and everything is printed. Following stdout, it exits with the agent's exit code (or 137
 * when the agent was killed before it could record one).
 */
export function followArgv(dir: string, stream: LogStream, offset: number): string[] {
  const script = [
    'd=$1; f=$d/$2; from=$(($3 + 1))',
    // May start before the starter has made the run's directory: it waits for the agent's pid.
    UNTIL_PID_FILE,
    'pid=$(cat "$d/pid")',
    'if [ -e "$d/exit" ]; then tail -c "+$from" "$f"',
    // GNU tail: -s is how often it checks that the agent still runs (and polls a file it cannot watch through inotify).
    'elif tail -s 0.02 --pid="$pid" -c 0 /dev/null > /dev/null 2>&1; then tail -c "+$from" -s 0.02 --pid="$pid" -f "$f"',
    // Other tails (busybox: no --pid, whole seconds only): one descriptor on the log, each cat printing what was
    // written since the last one and leaving the shared offset at its end; the last cat comes after the agent ended.
    `else ${PORTABLE_FOLLOWER}; fi`,
    '[ "$2" = stdout ] || exit 0',
    '[ -s "$d/exit" ] || exit 137',
    'exit "$(cat "$d/exit")"',
  ].join('\n');
  return ['/bin/sh', '-c', script, 'sh', dir, stream, String(offset)];
}

/** argv that kills the agent and everything it started (its whole process group). */
export function killArgv(dir: string): string[] {
  const script = ['d=$1', '[ -e "$d/started" ] || exit 0', UNTIL_PID_FILE, 'kill -9 "-$(cat "$d/pid")" 2>/dev/null; exit 0'].join('\n');
  return ['/bin/sh', '-c', script, 'sh', dir];
}
