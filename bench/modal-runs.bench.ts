/**
 * Claude runs on the Modal engine (issue 15), on the fake Modal control plane (../shared/fake-modal,
 * the real modal@0.11.1 SDK speaking gRPC to it), against the same CLI command exec'd directly
 * through the SDK, alternated in one process invocation so that both see the same machine:
 * - through the service: POST /api/sandboxes/{id}/runs on a warm service with SANDBOX_PROVIDER=modal
 *   (detached start + two log followers, see src/integrations/claude/claude-run-log.ts), timed to
 *   the first event on its SSE stream and to `done`;
 * - directly: ModalClient → sandboxes.create (same image, volume mount and workdir as the service's
 *   sandbox) → sandbox.exec(the service's own argv + env), stdin closed at once, timed to the first
 *   complete stdout line and to the exit (all output read);
 * - for reference, the same exec with stdin left open: the CLI in print mode waits ~3 s for stdin
 *   data when stdin is an open pipe (its "no stdin data received in 3s" fallback);
 * - for reference, the same argv + env through the service's POST /api/sandboxes/{id}/exec (wall
 *   time only: it answers once the command has ended): the provider's exec as it handles stdin.
 * The CLI is the real Claude Code CLI (FAKE_MODAL_CLAUDE_BIN), talking to the scripted fake
 * Messages API directly via ANTHROPIC_BASE_URL: a Modal sandbox has no way to the model gateway
 * without MODEL_GATEWAY_PUBLIC_URL, so the service injects the credentials as they are.
 * The baseline's argv is checked against the one the service really sent (the fake's call log).
 * Target (issue 15): service / direct ≤ 1.05 for first event and wall time, no fixed 3 s.
 * Build with `npx tsc -p tsconfig.json` (or `npm run build`), run as root (bubblewrap) with
 *   node dist/bench/modal-runs.bench.js [--quick] [--runs=N] [--postgres]
 * or through `node dist/bench/run.js --only=modal-runs`.
 */
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { ModalClient, type Sandbox } from 'modal';
import { AppConfig } from '../src/config/app-config';
import { CLAUDE_STATE_DIR } from '../src/integrations/claude/claude-cli.agent';
import { claudeCliInvocation, type ClaudeInvocation } from '../src/integrations/claude/claude-cli.invocation';
import { DEFAULT_MODAL_BASE_IMAGE, DEFAULT_MODAL_IMAGE_COMMANDS } from '../src/integrations/sandbox/modal/modal-image';
import { DEFAULT_MOUNT_PATH } from '../src/modules/sandboxes/sandboxes.service';
import { FakeAnthropic, type FakeTurn } from '../test/support/fake-anthropic';
import { api } from '../test/support/http';
import { BenchService } from './support/bench-service';
import { FakeModal } from './support/fake-modal';
import { benchOptions, epochNow, markdownTable, ms, summarize, type Summary, withTimeout } from './support/stats';
import { followEvents, type TimedEvent } from './support/timed-sse';

const FULL_RUNS = 10;
const QUICK_RUNS = 4;
const WARM_UP_RUNS = 2;
/** Runs of each reference row (stdin left open, POST …/exec): they only have to show a fixed wait. */
const REFERENCE_RUNS = 3;
const TARGET_RATIO = 1.05;
const RUN_TIMEOUT_MS = 120_000;
/** Not a credential: the fake accepts anything. Modal test tokens the fake accepts too. */
const FAKE_API_KEY = 'sk-ant-modal-bench-fake-key';
const MODAL_TOKENS = { MODAL_TOKEN_ID: 'ak-test', MODAL_TOKEN_SECRET: 'as-test' };
const PROMPT = 'Reply with the single word: ready';
/** A short reply: the run is dominated by fixed costs (process start, execs, the CLI's boot). */
const REPLY: FakeTurn = { content: [{ type: 'text', text: 'Ready.' }] };

type Client = ReturnType<typeof api>;

interface Context {
  service: BenchService;
  client: Client;
  sandboxId: string;
  fake: FakeAnthropic;
  direct: Sandbox;
  invocation: ClaudeInvocation;
}

interface Timing {
  /** Start → the first event (SSE) or the first complete stdout line (exec). */
  firstEventMs: number;
  /** Start → the run known to have ended: `done` (SSE), or exit with all output read (exec). */
  wallMs: number;
  /** What came first: the SSE event's name and its message type, or the stdout line's type. */
  firstEvent: string;
}

async function main(): Promise<void> {
  const options = benchOptions();
  const runsArg = process.argv.find((arg) => arg.startsWith('--runs='));
  const runs = runsArg ? Number(runsArg.slice('--runs='.length)) : options.quick ? QUICK_RUNS : FULL_RUNS;
  const loadAtStart = loadavg();
  const stops: Array<() => Promise<unknown>> = [];
  try {
    const fake = await FakeAnthropic.start({ delayMs: 10 });
    stops.push(() => fake.stop());
    const modal = await FakeModal.start();
    stops.push(() => modal.stop());
    // The SDK (in the service's process, which inherits this environment, and in this one) reads it itself.
    process.env.MODAL_SERVER_URL = modal.url;
    const env = { SANDBOX_PROVIDER: 'modal', MODAL_SERVER_URL: modal.url, ...MODAL_TOKENS, ANTHROPIC_BASE_URL: fake.url, ANTHROPIC_API_KEY: FAKE_API_KEY };
    const service = await BenchService.start({ env, database: options.database });
    stops.push(() => service.stop());
    const client = api(service.url, service.adminToken);
    const created = await client.post('/api/sandboxes', {});
    if (created.status !== 201) throw new Error(`create answered ${created.status}: ${created.text}`);
    const sandboxId = created.body.data.sandbox_id as string;
    stops.push(() => client.delete(`/api/sandboxes/${sandboxId}?sync=false`));

    const modalClient = new ModalClient({ tokenId: MODAL_TOKENS.MODAL_TOKEN_ID, tokenSecret: MODAL_TOKENS.MODAL_TOKEN_SECRET });
    stops.push(async () => modalClient.close());
    const direct = await createDirectSandbox(modalClient);
    stops.push(() => direct.terminate());

    const config = AppConfig.fromEnvironment(env);
    // As ClaudeCliAgent.start() builds it for POST …/runs {prompt, resume: false} on Modal (no gateway URL).
    const invocation = claudeCliInvocation(config, { prompt: PROMPT, runsAsRoot: true, configDir: `${DEFAULT_MOUNT_PATH}/${CLAUDE_STATE_DIR}` });
    const context: Context = { service, client, sandboxId, fake, direct, invocation };

    const callsBefore = (await modal.calls()).length;
    await runThroughService(context);
    await assertSameArgv(modal, callsBefore, invocation.argv);
    for (let run = 1; run < WARM_UP_RUNS; run++) await runThroughService(context);
    for (let run = 0; run < WARM_UP_RUNS; run++) await runDirect(context, { closeStdin: true });

    const throughService: Timing[] = [];
    const directExec: Timing[] = [];
    for (let run = 0; run < runs; run++) {
      // The order swaps every run so that drift hits both alike.
      if (run % 2 === 0) {
        throughService.push(await runThroughService(context));
        directExec.push(await runDirect(context, { closeStdin: true }));
      } else {
        directExec.push(await runDirect(context, { closeStdin: true }));
        throughService.push(await runThroughService(context));
      }
    }
    const stdinOpen: Timing[] = [];
    const serviceExec: Timing[] = [];
    for (let run = 0; run < REFERENCE_RUNS; run++) {
      stdinOpen.push(await runDirect(context, { closeStdin: false }));
      serviceExec.push(await runThroughServiceExec(context));
    }
    report({
      throughService,
      directExec,
      stdinOpen,
      serviceExec,
      setting: `${options.database}, service RSS ${service.residentMiB().toFixed(0)} MiB, load average at start ${loadAtStart.map((load) => load.toFixed(2)).join(' ')}, after ${loadavg().map((load) => load.toFixed(2)).join(' ')}`,
    });
  } finally {
    for (const stop of stops.reverse()) await stop().catch((error: unknown) => console.error(`cleanup: ${(error as Error).message}`));
  }
}

/** A sandbox made straight through the SDK, as the service makes its own (default image, volume at the mount path). */
async function createDirectSandbox(modal: ModalClient): Promise<Sandbox> {
  const app = await modal.apps.fromName('mss-bench-direct', { createIfMissing: true });
  const image = await modal.images.fromRegistry(DEFAULT_MODAL_BASE_IMAGE).dockerfileCommands([...DEFAULT_MODAL_IMAGE_COMMANDS]).build(app);
  const volume = await modal.volumes.fromName(`bench-direct-${randomBytes(4).toString('hex')}`, { createIfMissing: true });
  return modal.sandboxes.create(app, image, { workdir: DEFAULT_MOUNT_PATH, volumes: { [DEFAULT_MOUNT_PATH]: volume }, timeoutMs: 3600_000 });
}

/** The service starts the agent as `/bin/sh -c <starter> sh <run dir> <argv…>` (startArgv): the argv must be ours. */
async function assertSameArgv(modal: FakeModal, since: number, expected: string[]): Promise<void> {
  const calls = await modal.calls(since);
  const starter = calls.map((call) => call.request.commandArgs as string[] | undefined).find((args) => args?.[0] === '/bin/sh' && args.includes('claude'));
  const sent = starter?.slice(starter.indexOf('claude'));
  if (JSON.stringify(sent) !== JSON.stringify(expected)) {
    throw new Error(`the service ran ${JSON.stringify(sent)}, the baseline would run ${JSON.stringify(expected)}`);
  }
}

async function runThroughService(context: Context): Promise<Timing> {
  context.fake.script([REPLY]);
  const started = epochNow();
  const response = await context.client.post(`/api/sandboxes/${context.sandboxId}/runs`, { prompt: PROMPT, resume: false });
  if (response.status !== 202) throw new Error(`starting a run answered ${response.status}: ${response.text}`);
  const runId = response.body.data.run_id as string;
  const events = await withTimeout(followEvents(`${context.service.url}/api/sandboxes/${context.sandboxId}/runs/${runId}/events`, context.service.adminToken), RUN_TIMEOUT_MS, `run ${runId}`);
  assertSucceeded(events);
  return { firstEventMs: events[0].receivedAt - started, wallMs: events[events.length - 1].receivedAt - started, firstEvent: `${events[0].event} ${typeOf(events[0].data)}` };
}

/** The service's argv and environment through POST …/exec in the service's sandbox (not a run). */
async function runThroughServiceExec(context: Context): Promise<Timing> {
  context.fake.script([REPLY]);
  const { argv, env, secretEnv } = context.invocation;
  const started = epochNow();
  const response = await context.client.post(`/api/sandboxes/${context.sandboxId}/exec`, { command: argv, env: { ...env, ...secretEnv }, timeout_seconds: 120 });
  const wallMs = epochNow() - started;
  const data = response.body?.data as { exit_code: number; stdout: string } | undefined;
  if (response.status !== 200 || data?.exit_code !== 0 || !data.stdout.includes('"subtype":"success"')) {
    throw new Error(`claude through POST …/exec failed: ${response.status} ${response.text.slice(-3000)}`);
  }
  return { firstEventMs: Number.NaN, wallMs, firstEvent: typeOf(data.stdout.split('\n')[0]) };
}

function assertSucceeded(events: TimedEvent[]): void {
  const last = events[events.length - 1];
  const status = last?.event === 'done' ? (JSON.parse(last.data) as { status: string }).status : 'no done event';
  if (status !== 'succeeded') throw new Error(`run ended ${status}: ${events.map((event) => `${event.event} ${event.data.slice(0, 300)}`).join('\n')}`);
}

/** The same argv and environment through sandbox.exec(), stdout read line by line as it arrives. */
async function runDirect(context: Context, options: { closeStdin: boolean }): Promise<Timing> {
  context.fake.script([REPLY]);
  const { argv, env, secretEnv } = context.invocation;
  const started = epochNow();
  const exec = await context.direct.exec(argv, { mode: 'binary', workdir: DEFAULT_MOUNT_PATH, env: { ...env, ...secretEnv } });
  if (options.closeStdin) await exec.stdin.close();
  const work = (async () => {
    const [stdout, stderr] = await Promise.all([readLines(exec.stdout, started), readAll(exec.stderr)]);
    const exitCode = await exec.wait();
    return { stdout, stderr, exitCode };
  })();
  const { stdout, stderr, exitCode } = await withTimeout(work, RUN_TIMEOUT_MS, 'claude through sandbox.exec');
  const wallMs = epochNow() - started;
  if (exitCode !== 0 || !stdout.lines.some((line) => line.includes('"type":"result"') && line.includes('"subtype":"success"'))) {
    throw new Error(`claude through sandbox.exec exited ${exitCode}: ${stdout.lines.join('\n').slice(-2000)}\n${stderr.slice(-2000)}`);
  }
  return { firstEventMs: stdout.firstLineMs, wallMs, firstEvent: typeOf(stdout.lines[0]) };
}

/** `type/subtype` of a stream-json line (or of an SSE event's data), for the report. */
function typeOf(json: string): string {
  try {
    const parsed = JSON.parse(json) as { type?: string; subtype?: string };
    return [parsed.type, parsed.subtype].filter(Boolean).join('/') || '?';
  } catch {
    return 'not JSON';
  }
}

async function readLines(stream: ReadableStream<Uint8Array>, started: number): Promise<{ lines: string[]; firstLineMs: number }> {
  const decoder = new TextDecoder();
  const lines: string[] = [];
  let firstLineMs = Number.NaN;
  let buffer = '';
  for await (const chunk of stream) {
    buffer += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      if (lines.length === 0) firstLineMs = epochNow() - started;
      lines.push(buffer.slice(0, newline));
      buffer = buffer.slice(newline + 1);
    }
  }
  if (buffer) lines.push(buffer);
  return { lines, firstLineMs };
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = '';
  for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  return text;
}

function report(results: { throughService: Timing[]; directExec: Timing[]; stdinOpen: Timing[]; serviceExec: Timing[]; setting: string }): void {
  const { throughService, directExec, stdinOpen, serviceExec } = results;
  const of = (timings: Timing[], key: 'firstEventMs' | 'wallMs') => summarize(timings.map((timing) => timing[key]));
  const row = (label: string, first: Summary, wall: Summary) => [label, ms(first.median), ms(first.p95), ms(wall.median), ms(wall.p95), ms(wall.min), ms(wall.max), String(wall.runs)];
  console.log(`\n### Claude runs on the Modal engine: the service against the same CLI command through the SDK (fake Modal, fake model, ${results.setting})\n`);
  console.log(
    markdownTable(
      ['path', 'first event median ms', 'first event p95 ms', 'wall median ms', 'wall p95 ms', 'wall min ms', 'wall max ms', 'runs'],
      [
        row('service: POST …/runs → first SSE event / `done`', of(throughService, 'firstEventMs'), of(throughService, 'wallMs')),
        row('SDK: sandbox.exec(same argv + env), stdin closed → first stdout line / exit', of(directExec, 'firstEventMs'), of(directExec, 'wallMs')),
        row('reference: the same exec, stdin left open', of(stdinOpen, 'firstEventMs'), of(stdinOpen, 'wallMs')),
        row('reference: the same argv + env through the service\'s POST …/exec (answers at the end)', of(serviceExec, 'firstEventMs'), of(serviceExec, 'wallMs')),
      ],
    ),
  );
  const ratioLine = (label: string, key: 'firstEventMs' | 'wallMs') => {
    const ratio = of(throughService, key).median / of(directExec, key).median;
    const paired = summarize(throughService.map((timing, index) => timing[key] / directExec[index][key]));
    return `- ${label}: ${ratio.toFixed(3)} (ratio of medians; median of the ${paired.runs} paired ratios ${paired.median.toFixed(3)}, max ${paired.max.toFixed(3)}); target ≤ ${TARGET_RATIO.toFixed(2)} → ${ratio <= TARGET_RATIO ? 'met' : 'not met'}`;
  };
  const firsts = (timings: Timing[]) => [...new Set(timings.map((timing) => timing.firstEvent))].join(', ');
  console.log(`\nFirst event: SSE \`${firsts(throughService)}\`; stdout line \`${firsts(directExec)}\`.`);
  console.log(`\nService / SDK direct (same run):\n`);
  console.log(ratioLine('first event', 'firstEventMs'));
  console.log(ratioLine('wall time', 'wallMs'));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
