/**
 * The model gateway against talking to the model directly, with the real Claude Code CLI and the
 * scripted fake Messages API, in one process invocation:
 * - wall time of the same CLI command through POST …/exec in the same sandbox, once with
 *   ANTHROPIC_BASE_URL = the gateway (and a live run token), once = the fake model itself,
 *   alternated pair by pair;
 * - per-chunk delay of a streamed text delta: the same SSE request straight to the upstream and
 *   through the gateway's loopback port, alternated; a proxy in front of the fake stamps each delta
 *   with its send time, so the difference is what the gateway adds.
 * Build with `npm run build`, run with `node dist/bench/model-gateway.bench.js [--quick] [--postgres]`.
 */
import { request as httpRequest } from 'node:http';
import { AppConfig } from '../src/config/app-config';
import { CLAUDE_STATE_DIR } from '../src/integrations/claude/claude-cli.agent';
import { claudeCliInvocation, type ClaudeInvocation } from '../src/integrations/claude/claude-cli.invocation';
import { DEFAULT_MOUNT_PATH } from '../src/modules/sandboxes/sandboxes.service';
import type { FakeAnthropic, FakeStall } from '../test/support/fake-anthropic';
import { api } from '../test/support/http';
import { BenchService } from './support/bench-service';
import { benchOptions, epochNow, markdownTable, ms, summarize, type Summary } from './support/stats';
import { DELTAS_PER_REPLY, FAKE_API_KEY, PROMPT, REPLY, startOutsideModel } from './support/outside-model';
import { stampsIn } from './support/timestamping-proxy';

const FULL_PAIRS = 12;
const QUICK_PAIRS = 4;
const WARM_UP_PAIRS = 2;
const FULL_STREAM_PAIRS = 40;
const QUICK_STREAM_PAIRS = 12;
const TARGET_RATIO = 1.05;
const TARGET_ADDED_P99_MS = 5;
/** Holds a run active (its model request never answers) so that its gateway token stays valid for the benchmark. */
const HOLDER: FakeStall = { stall: 'silent' };
/** A Messages request that consumes one scripted reply (it carries tools) and streams it. */
const STREAM_REQUEST = JSON.stringify({ model: 'claude-sonnet-4-5', max_tokens: 256, stream: true, tools: [{ name: 'noop' }], messages: [{ role: 'user', content: 'stream' }] });

type Client = ReturnType<typeof api>;

async function main(): Promise<void> {
  const options = benchOptions();
  const { fake, proxy, stop: stopModel } = await startOutsideModel();
  const env = { ANTHROPIC_BASE_URL: proxy.url, ANTHROPIC_API_KEY: FAKE_API_KEY, RUN_IDLE_TIMEOUT_SECONDS: '3600' };
  const service = await BenchService.start({ env, database: options.database });
  try {
    const client = api(service.url, service.adminToken);
    const sandboxId = await createSandbox(client);
    const holder = await holdRunToken(client, fake);
    const invocation = claudeCliInvocation(AppConfig.fromEnvironment(env), {
      prompt: PROMPT,
      includePartialMessages: true,
      runsAsRoot: true,
      configDir: `${DEFAULT_MOUNT_PATH}/${CLAUDE_STATE_DIR}`,
    });
    const viaGateway = { ...invocation.env, ANTHROPIC_BASE_URL: holder.gatewayUrl, ANTHROPIC_API_KEY: holder.token };
    const direct = { ...invocation.env, ...invocation.secretEnv };

    const pairs = options.quick ? QUICK_PAIRS : FULL_PAIRS;
    const gatewayWall: number[] = [];
    const directWall: number[] = [];
    for (let pair = 0; pair < WARM_UP_PAIRS + pairs; pair++) {
      const order = pair % 2 === 0 ? ([viaGateway, direct] as const) : ([direct, viaGateway] as const);
      const times = new Map<Record<string, string>, number>();
      for (const claudeEnv of order) times.set(claudeEnv, await runThroughExec(client, sandboxId, fake, invocation, claudeEnv));
      if (pair < WARM_UP_PAIRS) continue;
      gatewayWall.push(times.get(viaGateway)!);
      directWall.push(times.get(direct)!);
    }

    const streamPairs = options.quick ? QUICK_STREAM_PAIRS : FULL_STREAM_PAIRS;
    const gatewayDelays: number[] = [];
    const directDelays: number[] = [];
    for (let pair = 0; pair < streamPairs; pair++) {
      const targets = [
        { delays: gatewayDelays, url: `${onHostLoopback(holder.gatewayUrl)}/v1/messages`, key: holder.token },
        { delays: directDelays, url: `${proxy.url}/v1/messages`, key: FAKE_API_KEY },
      ];
      if (pair % 2 === 1) targets.reverse();
      for (const target of targets) {
        fake.script([REPLY]);
        target.delays.push(...(await streamDelays(target.url, target.key)));
      }
    }
    await client.post(`/api/sandboxes/${holder.sandboxId}/runs/${holder.runId}/cancel`);
    report({ gatewayWall, directWall, gatewayDelays, directDelays, setting: `${options.database}, service RSS ${service.residentMiB().toFixed(0)} MiB` });
  } finally {
    await service.stop();
    await stopModel();
  }
}

/** The gateway as the host reaches it: the sandbox's NAT shows the host's loopback at another address. */
function onHostLoopback(sandboxUrl: string): string {
  const url = new URL(sandboxUrl);
  url.hostname = '127.0.0.1';
  return url.origin;
}

async function createSandbox(client: Client, body: Record<string, unknown> = {}): Promise<string> {
  const created = await client.post('/api/sandboxes', body);
  if (created.status !== 201) throw new Error(`create answered ${created.status}: ${created.text}`);
  return created.body.data.sandbox_id as string;
}

/** Starts a run that stays active in its own sandbox and reads its gateway URL and token from the Claude process. */
async function holdRunToken(client: Client, fake: FakeAnthropic): Promise<{ sandboxId: string; runId: string; gatewayUrl: string; token: string }> {
  // Its own volume: the measured CLI must not share Claude's state directory with a live session.
  const sandboxId = await createSandbox(client, { volume_name: 'holder' });
  fake.script([HOLDER]);
  const started = await client.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'hold', resume: false });
  if (started.status !== 202) throw new Error(`starting the holder run answered ${started.status}: ${started.text}`);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const scan = await client.post(`/api/sandboxes/${sandboxId}/exec`, { command: ['sh', '-c', `for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' < "$f"; echo; done 2>/dev/null`] });
    const environ = (scan.body?.data?.stdout as string | undefined) ?? '';
    const token = /^ANTHROPIC_API_KEY=(mgw_[A-Za-z0-9_-]{43})$/m.exec(environ)?.[1];
    const gatewayUrl = /^ANTHROPIC_BASE_URL=(\S+)$/m.exec(environ)?.[1];
    // Once the holder has taken its scripted reply, the measured runs' replies cannot go to it.
    if (token && gatewayUrl && fake.unconsumedReplies === 0) return { sandboxId, runId: started.body.data.run_id as string, gatewayUrl, token };
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error('the holder run never showed a gateway token (are runs going through the gateway?)');
}

async function runThroughExec(client: Client, sandboxId: string, fake: FakeAnthropic, invocation: ClaudeInvocation, env: Record<string, string>): Promise<number> {
  fake.script([REPLY]);
  const started = performance.now();
  const response = await client.post(`/api/sandboxes/${sandboxId}/exec`, { command: invocation.argv, env, timeout_seconds: 120 });
  const wallMs = performance.now() - started;
  const data = response.body?.data as { exit_code: number; stdout: string } | undefined;
  if (response.status !== 200 || data?.exit_code !== 0 || !data.stdout.includes('"subtype":"success"')) {
    throw new Error(`claude through exec failed: ${response.status} ${response.text.slice(-3000)}`);
  }
  return wallMs;
}

/** One streamed reply; for each stamped delta, the time from the proxy writing it to this client reading its event. */
function streamDelays(url: string, apiKey: string): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-api-key': apiKey, 'anthropic-version': '2023-06-01' } });
    request.on('response', (response) => {
      if (response.statusCode !== 200) return reject(new Error(`stream answered ${response.statusCode}`));
      const delays: number[] = [];
      let buffer = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        const receivedAt = epochNow();
        buffer += chunk;
        const boundary = buffer.lastIndexOf('\n\n');
        if (boundary < 0) return;
        delays.push(...stampsIn(buffer.slice(0, boundary)).map((sent) => receivedAt - sent));
        buffer = buffer.slice(boundary + 2);
      });
      response.on('end', () => (delays.length === DELTAS_PER_REPLY ? resolve(delays) : reject(new Error(`${delays.length} of ${DELTAS_PER_REPLY} deltas arrived`))));
      response.on('error', reject);
    });
    request.on('error', reject);
    request.end(STREAM_REQUEST);
  });
}

function report(results: { gatewayWall: number[]; directWall: number[]; gatewayDelays: number[]; directDelays: number[]; setting: string }): void {
  const gatewayWall = summarize(results.gatewayWall);
  const directWall = summarize(results.directWall);
  const ratio = gatewayWall.median / directWall.median;
  const paired = summarize(results.gatewayWall.map((wall, index) => wall / results.directWall[index]));
  const wallRow = (label: string, summary: Summary) => [label, ms(summary.median), ms(summary.p95), ms(summary.min), ms(summary.max), String(summary.runs)];
  console.log(`\n### Claude CLI through the model gateway against the fake model directly (${DELTAS_PER_REPLY} text deltas 10 ms apart, ${results.setting})\n`);
  console.log(
    markdownTable(
      ['wall time (same argv through POST …/exec, same sandbox)', 'median ms', 'p95 ms', 'min ms', 'max ms', 'runs'],
      [wallRow('ANTHROPIC_BASE_URL = model gateway (run token)', gatewayWall), wallRow('ANTHROPIC_BASE_URL = the model itself', directWall)],
    ),
  );
  console.log(
    `\nRatio gateway / direct: ${ratio.toFixed(3)} (ratio of medians; median of the ${paired.runs} paired ratios ${paired.median.toFixed(3)}, max ${paired.max.toFixed(3)}). ` +
      `Target ≤ ${TARGET_RATIO.toFixed(2)} → ${ratio <= TARGET_RATIO ? 'met' : 'not met'}.`,
  );

  const viaGateway = summarize(results.gatewayDelays);
  const direct = summarize(results.directDelays);
  const delayRow = (label: string, summary: Summary) => [label, ms(summary.median), ms(summary.p95), ms(summary.p99), ms(summary.max), String(summary.runs)];
  console.log('\n### Per-chunk delay of a streamed text delta: upstream writes it → client reads it\n');
  console.log(markdownTable(['path', 'median ms', 'p95 ms', 'p99 ms', 'max ms', 'deltas'], [delayRow('through the gateway (loopback port)', viaGateway), delayRow('straight to the same upstream', direct)]));
  const addedP99 = viaGateway.p99 - direct.p99;
  console.log(
    `\nAdded by the gateway: median ${ms(viaGateway.median - direct.median)} ms, p99 ${ms(addedP99)} ms. ` +
      `Target p99 ≤ ${TARGET_ADDED_P99_MS} ms → ${addedP99 <= TARGET_ADDED_P99_MS ? 'met' : 'not met'}.`,
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
