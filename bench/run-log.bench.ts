/**
 * Steady-state cost of following a run's log files (durable runs, issue 13) against reading the
 * CLI's stdout pipe directly (how runs were read before), in one process invocation:
 * the same Claude Code CLI run (real CLI, scripted fake model behind the timestamping proxy,
 * --include-partial-messages: 40 text deltas per reply) in the same local sandbox, alternately
 * (a) direct pipe: provider.exec(claude argv) and its stdout read as stream-json, as the agent did
 *     before; (b) log follow: ClaudeCliAgent.start() (detached start, two `tail -f` followers) and
 *     its events$. Both read by this process, so only the path in between differs.
 * Measures wall time (start → result line; start → end known) and each text delta's delay from
 * the proxy writing it to the CLI to this process receiving its line or event.
 * Build with `npm run build`, run with `node dist/bench/run-log.bench.js [--quick]`.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import { AppConfig } from '../src/config/app-config';
import { CLAUDE_STATE_DIR, ClaudeCliAgent } from '../src/integrations/claude/claude-cli.agent';
import { claudeCliInvocation, type ClaudeInvocation } from '../src/integrations/claude/claude-cli.invocation';
import type { ClaudeSandbox } from '../src/integrations/claude/claude.agent';
import { readStreamJson } from '../src/integrations/claude/stream-json-reader';
import { LocalSandboxProvider } from '../src/integrations/sandbox/local/local-sandbox.provider';
import { DEFAULT_MOUNT_PATH } from '../src/modules/sandboxes/sandboxes.service';
import type { FakeAnthropic } from '../test/support/fake-anthropic';
import { DELTAS_PER_REPLY, FAKE_API_KEY, PROMPT, REPLY, startOutsideModel } from './support/outside-model';
import { benchOptions, epochNow, markdownTable, ms, summarize, type Summary } from './support/stats';
import { stampsIn } from './support/timestamping-proxy';

const FULL_PAIRS = 20;
const QUICK_PAIRS = 5;
const WARM_UP_PAIRS = 2;
const TARGET_RATIO = 1.03;
const TARGET_ADDED_P99_MS = 20;

interface Context {
  provider: LocalSandboxProvider;
  agent: ClaudeCliAgent;
  sandbox: ClaudeSandbox;
  invocation: ClaudeInvocation;
  fake: FakeAnthropic;
}

interface Timing {
  /** Start → the `result` line read. */
  toResultMs: number;
  /** Start → the run known to have ended (exit code and all output read): when the service records it. */
  wallMs: number;
  /** Receive time minus the proxy's send stamp, per streamed text delta. */
  deltaDelaysMs: number[];
}

async function main(): Promise<void> {
  const options = benchOptions();
  const pairs = options.quick ? QUICK_PAIRS : FULL_PAIRS;
  const loadAtStart = loadavg();
  Logger.overrideLogger(false);
  const { fake, proxy, stop: stopModel } = await startOutsideModel();
  const dataDir = await mkdtemp(join(tmpdir(), 'run-log-bench-'));
  const config = AppConfig.fromEnvironment({ DATA_DIR: dataDir, ANTHROPIC_BASE_URL: proxy.url, ANTHROPIC_API_KEY: FAKE_API_KEY });
  const provider = new LocalSandboxProvider(config);
  provider.assertReady();
  let providerSandboxId: string | undefined;
  try {
    ({ providerSandboxId } = await provider.create({
      sandboxId: 'run-log-bench',
      accountId: 'bench',
      dockerfileCommands: [],
      volumeName: 'work',
      volumeMountPath: DEFAULT_MOUNT_PATH,
      workdir: DEFAULT_MOUNT_PATH,
      env: {},
      secrets: [],
      // The fake model is an outside host (see outside-model.ts), reached through the sandbox's NAT.
      network: { mode: 'internet', cidrAllowlist: [], allowedDomains: [] },
      timeoutSeconds: 3600,
    }));
    const sandbox: ClaudeSandbox = { providerSandboxId, workdir: DEFAULT_MOUNT_PATH, volumeMountPath: DEFAULT_MOUNT_PATH };
    const context: Context = {
      provider,
      agent: new ClaudeCliAgent(config, provider),
      sandbox,
      // What ClaudeCliAgent.start builds for these options (no gateway token: the configured key).
      invocation: claudeCliInvocation(config, { prompt: PROMPT, includePartialMessages: true, runsAsRoot: true, configDir: `${DEFAULT_MOUNT_PATH}/${CLAUDE_STATE_DIR}` }),
      fake,
    };
    const direct: Timing[] = [];
    const followed: Timing[] = [];
    for (let pair = 0; pair < WARM_UP_PAIRS + pairs; pair++) {
      // Order swapped every pair so that drift and the previous run's teardown hit both alike.
      const first = pair % 2 === 0 ? 'direct' : 'follow';
      const timings: Record<string, Timing> = {};
      for (const kind of first === 'direct' ? ['direct', 'follow'] : ['follow', 'direct']) {
        timings[kind] = kind === 'direct' ? await runThroughPipe(context) : await runThroughLog(context);
      }
      if (pair < WARM_UP_PAIRS) continue;
      direct.push(timings.direct);
      followed.push(timings.follow);
    }
    report({ direct, followed, loadAtStart, loadAtEnd: loadavg() });
  } finally {
    if (providerSandboxId) await provider.terminate(providerSandboxId).catch((error: Error) => console.error(`terminate: ${error.message}`));
    await provider.onApplicationShutdown();
    await stopModel();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** (a) Before durable runs: the CLI as the exec's own process, its stdout pipe read as stream-json. */
async function runThroughPipe(context: Context): Promise<Timing> {
  context.fake.script([REPLY]);
  const started = performance.now();
  const cli = await context.provider.exec(context.sandbox.providerSandboxId, { ...context.invocation, workdir: context.sandbox.workdir });
  const delays: number[] = [];
  let toResultMs = Number.NaN;
  let succeeded = false;
  const readStdout = async () => {
    for await (const line of readStreamJson(cli.stdout)) {
      const receivedAt = epochNow();
      if (line.kind !== 'json') continue;
      if (line.type === 'stream_event') delays.push(...stampsIn(JSON.stringify(line.payload)).map((sent) => receivedAt - sent));
      if (line.type === 'result') {
        toResultMs = performance.now() - started;
        succeeded = line.payload.subtype === 'success' && line.payload.is_error !== true;
      }
    }
  };
  const readStderr = async () => {
    for await (const _line of readStreamJson(cli.stderr)); // read as the agent read it (its tail explains failures)
  };
  const [exit] = await Promise.all([cli.wait(), readStdout(), readStderr()]);
  const wallMs = performance.now() - started;
  if (exit.exitCode !== 0 || !succeeded) throw new Error(`claude through the pipe: exit ${exit.exitCode}, succeeded ${succeeded}`);
  return { toResultMs, wallMs, deltaDelaysMs: delays };
}

/** (b) Durable runs: the agent started detached, its log files followed, events read from events$. */
async function runThroughLog(context: Context): Promise<Timing> {
  context.fake.script([REPLY]);
  const started = performance.now();
  const execution = context.agent.start(context.sandbox, randomUUID(), { prompt: PROMPT, includePartialMessages: true });
  const delays: number[] = [];
  let toResultMs = Number.NaN;
  const subscription = execution.events$.subscribe((event) => {
    const receivedAt = epochNow();
    if (event.kind !== 'message') return;
    if (event.type === 'stream_event') delays.push(...stampsIn(JSON.stringify(event.payload)).map((sent) => receivedAt - sent));
    if (event.type === 'result') toResultMs = performance.now() - started;
  });
  const result = await execution.result.finally(() => subscription.unsubscribe());
  const wallMs = performance.now() - started;
  if (result.status !== 'succeeded' || result.exitCode !== 0) throw new Error(`claude through the run log: ${result.status} (exit ${result.exitCode}): ${result.error}`);
  return { toResultMs, wallMs, deltaDelaysMs: delays };
}

function report(results: { direct: Timing[]; followed: Timing[]; loadAtStart: number[]; loadAtEnd: number[] }): void {
  const { direct, followed } = results;
  const wallRow = (label: string, summary: Summary) => [label, ms(summary.median), ms(summary.p95), ms(summary.min), ms(summary.max), String(summary.runs)];
  const of = (timings: Timing[], key: 'wallMs' | 'toResultMs') => summarize(timings.map((timing) => timing[key]));
  const [directWall, followWall, directResult, followResult] = [of(direct, 'wallMs'), of(followed, 'wallMs'), of(direct, 'toResultMs'), of(followed, 'toResultMs')];
  const ratio = followWall.median / directWall.median;
  const paired = summarize(followed.map((timing, index) => timing.wallMs / direct[index].wallMs));
  const load = (values: number[]) => values.map((value) => value.toFixed(2)).join(' ');

  console.log(`\n### Run log follow against the direct pipe (same sandbox, fake model, ${DELTAS_PER_REPLY} text deltas 10 ms apart; load average ${load(results.loadAtStart)} → ${load(results.loadAtEnd)})\n`);
  console.log(
    markdownTable(
      ['wall time', 'median ms', 'p95 ms', 'min ms', 'max ms', 'runs'],
      [
        wallRow('**follow the run log**: start → end known (`ClaudeCliAgent.start`, `result` settles)', followWall),
        wallRow('**direct pipe**: start → end known (`provider.exec`, exit + stdout read)', directWall),
        wallRow('follow the run log: start → `result` line read', followResult),
        wallRow('direct pipe: start → `result` line read', directResult),
      ],
    ),
  );
  console.log(
    `\nRatio follow / direct (end known): ${ratio.toFixed(3)} (ratio of medians; median of the ${paired.runs} paired ratios ${paired.median.toFixed(3)}, ` +
      `max ${paired.max.toFixed(3)}); to the \`result\` line: ${(followResult.median / directResult.median).toFixed(3)}. ` +
      `Median difference: ${ms(followWall.median - directWall.median)} ms (end), ${ms(followResult.median - directResult.median)} ms (result line). ` +
      `Target ≤ ${TARGET_RATIO.toFixed(2)} → ${ratio <= TARGET_RATIO ? 'met' : 'not met'}.`,
  );

  const followDelays = summarize(followed.flatMap((timing) => timing.deltaDelaysMs));
  const directDelays = summarize(direct.flatMap((timing) => timing.deltaDelaysMs));
  const delayRow = (label: string, summary: Summary) => [label, ms(summary.median), ms(summary.p95), ms(summary.p99), ms(summary.max), String(summary.runs)];
  console.log('\n### Delay of a streamed text delta: proxy writes it to the CLI → this process has its line / event\n');
  console.log(
    markdownTable(
      ['path', 'median ms', 'p95 ms', 'p99 ms', 'max ms', 'deltas'],
      [delayRow('follow the run log (`tail -f` of the file, follower exec, events$)', followDelays), delayRow('direct pipe (the CLI exec\'s stdout)', directDelays)],
    ),
  );
  const addedP99 = followDelays.p99 - directDelays.p99;
  console.log(
    `\nAdded by following the log: median ${ms(followDelays.median - directDelays.median)} ms, p95 ${ms(followDelays.p95 - directDelays.p95)} ms, ` +
      `p99 ${ms(addedP99)} ms. Target added p99 ≤ ${TARGET_ADDED_P99_MS} ms → ${addedP99 <= TARGET_ADDED_P99_MS ? 'met' : 'not met'}.`,
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
