/**
 * Claude runs through the HTTP API of a warm service against the same CLI command run directly,
 * with the real Claude Code CLI talking to the scripted fake Messages API:
 * - wall time of a run (POST …/runs → `done` on its event stream) against the same argv and
 *   environment started through POST …/exec in the same sandbox, alternated in one loop;
 * - delay from a streamed text delta leaving the fake model to an SSE client receiving it (a
 *   proxy stamps each delta with its send time), beside the same delay to the stdout of the CLI
 *   started on the host: what the CLI itself adds;
 * - 50 SSE subscribers on one run, each counted against the run's complete event log.
 * Build with `npm run build`, run with `node dist/bench/claude-runs.bench.js [--quick] [--postgres]`.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { AppConfig } from '../src/config/app-config';
import { CLAUDE_STATE_DIR } from '../src/integrations/claude/claude-cli.agent';
import { claudeCliInvocation, type ClaudeInvocation } from '../src/integrations/claude/claude-cli.invocation';
import { DEFAULT_MOUNT_PATH } from '../src/modules/sandboxes/sandboxes.service';
import type { FakeAnthropic, FakeTurn } from '../test/support/fake-anthropic';
import { api } from '../test/support/http';
import { BenchService } from './support/bench-service';
import { benchOptions, epochNow, markdownTable, ms, summarize, type Summary } from './support/stats';
import { followEvents, type TimedEvent } from './support/timed-sse';
import { DELTAS_PER_REPLY, FAKE_API_KEY, PROMPT, REPLY, startOutsideModel } from './support/outside-model';
import { stampsIn } from './support/timestamping-proxy';

const FULL_PAIRS = 12;
const QUICK_PAIRS = 4;
const WARM_UP_PAIRS = 2;
const SUBSCRIBERS = 50;
const TARGET_RATIO = 1.1;
const TARGET_P99_MS = 20;
/** The fan-out run streams more slowly, so that subscribers join while it is live. */
const FAN_OUT_REPLY: FakeTurn = { ...REPLY, delayMs: 25 };
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

type Client = ReturnType<typeof api>;

interface RunContext {
  service: BenchService;
  client: Client;
  sandboxId: string;
  fake: FakeAnthropic;
  claudeBin: string;
  sandboxInvocation: ClaudeInvocation;
  hostInvocation: ClaudeInvocation;
  hostPlace: { cwd: string; home: string };
}

interface Timing {
  wallMs: number;
  /** Receive time minus send time of each streamed text delta. */
  deltaDelaysMs: number[];
}

async function main(): Promise<void> {
  const options = benchOptions();
  const pairs = options.quick ? QUICK_PAIRS : FULL_PAIRS;
  const { fake, proxy, stop: stopModel } = await startOutsideModel();
  const env = { ANTHROPIC_BASE_URL: proxy.url, ANTHROPIC_API_KEY: FAKE_API_KEY };
  const service = await BenchService.start({ env, database: options.database });
  const hostDir = await mkdtemp(join(tmpdir(), 'claude-runs-bench-'));
  try {
    const client = api(service.url, service.adminToken);
    const created = await client.post('/api/sandboxes', {});
    if (created.status !== 201) throw new Error(`create answered ${created.status}: ${created.text}`);
    const config = AppConfig.fromEnvironment(env);
    const invocationIn = (configDir: string) => claudeCliInvocation(config, { prompt: PROMPT, includePartialMessages: true, runsAsRoot: true, configDir });
    const hostPlace = { cwd: join(hostDir, 'volume'), home: join(hostDir, 'home') };
    await mkdir(hostPlace.cwd, { recursive: true });
    await mkdir(join(hostPlace.home, 'tmp'), { recursive: true });
    const context: RunContext = {
      service,
      client,
      sandboxId: created.body.data.sandbox_id,
      fake,
      claudeBin: config.sandbox.claudeBin,
      sandboxInvocation: invocationIn(`${DEFAULT_MOUNT_PATH}/${CLAUDE_STATE_DIR}`),
      hostInvocation: invocationIn(join(hostPlace.cwd, CLAUDE_STATE_DIR)),
      hostPlace,
    };

    for (let pair = 0; pair < WARM_UP_PAIRS; pair++) await measurePair(context, pair);
    const throughApi: Timing[] = [];
    const directExec: Timing[] = [];
    const onHost: Timing[] = [];
    for (let pair = 0; pair < pairs; pair++) {
      const measured = await measurePair(context, pair);
      throughApi.push(measured.throughApi);
      directExec.push(measured.directExec);
      onHost.push(measured.onHost);
    }
    const fanOut = await fanOutRun(context);
    report({ throughApi, directExec, onHost, fanOut, setting: `${options.database}, service RSS ${service.residentMiB().toFixed(0)} MiB` });
  } finally {
    await service.stop();
    await stopModel();
    await rm(hostDir, { recursive: true, force: true });
  }
}

/** One run of each kind; API and exec swap order every pair so that drift hits both alike. */
async function measurePair(context: RunContext, pair: number): Promise<{ throughApi: Timing; directExec: Timing; onHost: Timing }> {
  if (pair % 2 === 0) {
    const throughApi = await runThroughApi(context);
    const directExec = await runThroughExec(context);
    return { throughApi, directExec, onHost: await runOnHost(context) };
  }
  const directExec = await runThroughExec(context);
  const throughApi = await runThroughApi(context);
  return { throughApi, directExec, onHost: await runOnHost(context) };
}

async function runThroughApi(context: RunContext): Promise<Timing> {
  context.fake.script([REPLY]);
  const started = performance.now();
  const runId = await startRun(context);
  const events = await followEvents(eventsUrl(context, runId), context.service.adminToken);
  const wallMs = performance.now() - started;
  assertSucceeded(events);
  return { wallMs, deltaDelaysMs: deltaDelays(events) };
}

async function startRun(context: RunContext): Promise<string> {
  const response = await context.client.post(`/api/sandboxes/${context.sandboxId}/runs`, { prompt: PROMPT, include_partial_messages: true, resume: false });
  if (response.status !== 202) throw new Error(`starting a run answered ${response.status}: ${response.text}`);
  return response.body.data.run_id as string;
}

function eventsUrl(context: RunContext, runId: string): string {
  return `${context.service.url}/api/sandboxes/${context.sandboxId}/runs/${runId}/events`;
}

function assertSucceeded(events: TimedEvent[]): void {
  const last = events[events.length - 1];
  const status = last?.event === 'done' ? (JSON.parse(last.data) as { status: string }).status : 'no done event';
  if (status !== 'succeeded') throw new Error(`run ended ${status}: ${events.filter((event) => event.event === 'error').map((event) => event.data).join('; ')}`);
}

/** The service's own argv and environment, through POST …/exec in the same sandbox. */
async function runThroughExec(context: RunContext): Promise<Timing> {
  context.fake.script([REPLY]);
  const { argv, env, secretEnv } = context.sandboxInvocation;
  const started = performance.now();
  const response = await context.client.post(`/api/sandboxes/${context.sandboxId}/exec`, { command: argv, env: { ...env, ...secretEnv }, timeout_seconds: 120 });
  const wallMs = performance.now() - started;
  const data = response.body?.data as { exit_code: number; stdout: string; stderr: string } | undefined;
  if (response.status !== 200 || data?.exit_code !== 0 || !data.stdout.includes('"subtype":"success"')) {
    throw new Error(`claude through exec failed: ${response.status} ${response.text.slice(-3000)}`);
  }
  return { wallMs, deltaDelaysMs: [] };
}

/** The same invocation as a child of this process on the host, each stdout line timed as it is read. */
async function runOnHost(context: RunContext): Promise<Timing> {
  context.fake.script([REPLY]);
  const { argv, env, secretEnv } = context.hostInvocation;
  const { cwd, home } = context.hostPlace;
  const started = performance.now();
  const child = spawn(context.claudeBin, argv.slice(1), {
    cwd,
    env: { PATH: SYSTEM_PATH, HOME: home, CLAUDE_CODE_TMPDIR: join(home, 'tmp'), ...env, ...secretEnv },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const delays: number[] = [];
  let succeeded = false;
  for await (const line of createInterface({ input: child.stdout })) {
    const receivedAt = epochNow();
    if (line.includes('"type":"stream_event"')) delays.push(...stampsIn(line).map((sent) => receivedAt - sent));
    if (line.includes('"type":"result"') && line.includes('"subtype":"success"')) succeeded = true;
  }
  const exitCode = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve)));
  if (exitCode !== 0 || !succeeded) throw new Error(`claude on the host exited with ${exitCode} (succeeded: ${succeeded})`);
  return { wallMs: performance.now() - started, deltaDelaysMs: delays };
}

function deltaDelays(events: TimedEvent[]): number[] {
  return events.filter((event) => event.event === 'stream_event').flatMap((event) => stampsIn(event.data).map((sent) => event.receivedAt - sent));
}

interface FanOut {
  subscribers: number;
  eventsInRun: number;
  complete: number;
  received: number[];
  deltaDelaysMs: number[];
}

/** SUBSCRIBERS clients follow one run from its start; each must get exactly the run's event log. */
async function fanOutRun(context: RunContext): Promise<FanOut> {
  context.fake.script([FAN_OUT_REPLY]);
  const runId = await startRun(context);
  const streams = await Promise.all(Array.from({ length: SUBSCRIBERS }, () => followEvents(eventsUrl(context, runId), context.service.adminToken)));
  const log = await followEvents(eventsUrl(context, runId), context.service.adminToken);
  assertSucceeded(log);
  const expected = log.map((event) => `${event.id} ${event.event} ${event.data}`).join('\n');
  const isComplete = (stream: TimedEvent[]) => stream.map((event) => `${event.id} ${event.event} ${event.data}`).join('\n') === expected;
  return {
    subscribers: streams.length,
    eventsInRun: log.length,
    complete: streams.filter(isComplete).length,
    received: streams.map((stream) => stream.length),
    deltaDelaysMs: streams.flatMap(deltaDelays),
  };
}

function report(results: { throughApi: Timing[]; directExec: Timing[]; onHost: Timing[]; fanOut: FanOut; setting: string }): void {
  const { throughApi, directExec, onHost, fanOut } = results;
  const wall = (timings: Timing[]) => summarize(timings.map((timing) => timing.wallMs));
  const apiWall = wall(throughApi);
  const execWall = wall(directExec);
  const ratio = apiWall.median / execWall.median;
  const pairedRatios = summarize(throughApi.map((timing, index) => timing.wallMs / directExec[index].wallMs));
  const wallRow = (label: string, summary: Summary) => [label, ms(summary.median), ms(summary.p95), ms(summary.min), ms(summary.max), String(summary.runs)];

  console.log(`\n### Claude runs: API against the same command run directly (fake model, ${DELTAS_PER_REPLY} text deltas 10 ms apart, ${results.setting})\n`);
  console.log(
    markdownTable(
      ['wall time', 'median ms', 'p95 ms', 'min ms', 'max ms', 'runs'],
      [
        wallRow('run through the API (POST …/runs → `done` on the SSE stream)', apiWall),
        wallRow('same argv + env through POST …/exec in the same sandbox', execWall),
        wallRow('same invocation spawned on the host (no sandbox, no HTTP)', wall(onHost)),
      ],
    ),
  );
  console.log(
    `\nRatio API / exec: ${ratio.toFixed(3)} (ratio of medians; median of the ${pairedRatios.runs} paired ratios ${pairedRatios.median.toFixed(3)}, ` +
      `max ${pairedRatios.max.toFixed(3)}). Target ≤ ${TARGET_RATIO.toFixed(2)} → ${ratio <= TARGET_RATIO ? 'met' : 'not met'}.`,
  );

  const delayRow = (label: string, samples: number[]) => {
    const summary = summarize(samples);
    return [label, ms(summary.median), ms(summary.p95), ms(summary.p99), ms(summary.max), String(summary.runs)];
  };
  const apiDelays = throughApi.flatMap((timing) => timing.deltaDelaysMs);
  const hostDelays = onHost.flatMap((timing) => timing.deltaDelaysMs);
  console.log('\n### Streaming delay of a text delta: fake model → receiver\n');
  console.log(
    markdownTable(
      ['receiver', 'median ms', 'p95 ms', 'p99 ms', 'max ms', 'deltas'],
      [
        delayRow('SSE client of the API (1 subscriber)', apiDelays),
        delayRow(`each of ${fanOut.subscribers} SSE subscribers of one run`, fanOut.deltaDelaysMs),
        delayRow('stdout of the CLI spawned on the host (the CLI alone)', hostDelays),
      ],
    ),
  );
  const p99 = summarize(apiDelays).p99;
  console.log(
    `\nThe API figure is an upper bound on line-leaves-process → client: it includes the CLI's own share (host row). ` +
      `Target p99 ≤ ${TARGET_P99_MS} ms → ${ms(p99)} ms (${p99 <= TARGET_P99_MS ? 'met' : 'not met'}); ` +
      `p99 minus the CLI-alone p99: ${ms(p99 - summarize(hostDelays).p99)} ms.`,
  );

  console.log(`\n### ${fanOut.subscribers} concurrent SSE subscribers on one run\n`);
  console.log(
    markdownTable(
      ['subscribers', 'events in the run', 'subscribers with every event, in order, no duplicate', 'fewest received', 'most received'],
      [[String(fanOut.subscribers), String(fanOut.eventsInRun), String(fanOut.complete), String(Math.min(...fanOut.received)), String(Math.max(...fanOut.received))]],
    ),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
