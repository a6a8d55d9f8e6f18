/**
 * Restart of the service (durable sandboxes and runs, issue 13): the real service in its own
 * process (the built dist/src/main.js, as deployed) with 20 running sandboxes and 5 active Claude
 * runs (real CLI, scripted fake model through the model gateway), killed with SIGKILL and started
 * again. Measured from spawning the new process: healthy (GET /api/health 200), every sandbox
 * answering `running`, every run's event stream delivering new events; then every run must end
 * succeeded with its events numbered 1..n, none lost or repeated, and no sandbox ended.
 *
 * Each agent's first Bash tool waits for a wall-clock time that this benchmark writes into its
 * sandbox just before the kill: the tool then ends while no service runs, so the agent's next lines
 * (tool result) are written to its log with nobody following, and its next model request meets a
 * closed gateway (the CLI retries until the new service's gateway answers). The first new event on
 * each run's stream after the restart thus measures the new service picking the run up, not the
 * agent's own pace. The model then has it run `sleep 2` before its final answer, so that the agents
 * are still working when the new service follows them again.
 * `--finish-during-restart` leaves that second tool out: agents then usually finish while the new
 * service is still starting (their model request reaches its gateway before its runs are resumed),
 * which exercises resuming runs whose agent has already ended.
 * "Events lost" compares each run's events with the lines its agent wrote (the stdout log in the
 * sandbox): every line must be an event, and seqs must be 1..n with no gap or repeat.
 * A baseline restart with no sandbox and no run follows, in the same invocation.
 * Build with `npm run build`, run with `node dist/bench/restart.bench.js [--quick] [--postgres] [--finish-during-restart]`.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { endOfRunCode, runLogDir } from '../src/integrations/claude/claude-run-log';
import { DEFAULT_MOUNT_PATH } from '../src/modules/sandboxes/sandboxes.service';
import { FakeAnthropic, type FakeReply } from '../test/support/fake-anthropic';
import { api } from '../test/support/http';
import { freePort } from '../test/support/service-process';
import { readSse } from '../test/support/sse-client';
import { createDatabase, dropDatabase, login } from '../test/support/test-app';
import { BuiltService, unmountUnder } from './support/built-service';
import { benchOptions, epochNow, markdownTable, ms, summarize, withTimeout } from './support/stats';
import { SseConnection } from './support/sse-connection';
import type { TimedEvent } from './support/timed-sse';

const SANDBOXES = 20;
const RUNS = 5;
const FULL_RESTARTS = 3;
const QUICK_RESTARTS = 1;
const BASELINE_RESTARTS = { full: 3, quick: 1 };
/** The agents' tools end this long after the kill: while no service runs (a start takes seconds). */
const TOOL_ENDS_AFTER_KILL_MS = 300;
/** The signal is written this long before the tools end (time for the five execs that write it). */
const SIGNAL_LEAD_MS = 2000;
const RUN_TIMEOUT_MS = 180_000;
const ADMIN = { email: 'restart-bench@example.test', password: 'restart-bench-password-1' };
const FINAL_TEXT = 'Done, across a restart of the service.';
/** Events the service writes itself; every other event is one line of the agent's stdout. */
const SERVICE_EVENTS = new Set(['done', 'error', 'stderr']);

type Client = ReturnType<typeof api>;

interface Context {
  env: Record<string, string>;
  url: string;
  token: string;
  client: Client;
  fake: FakeAnthropic;
  service: BuiltService;
  sandboxIds: string[];
  /** The sandboxes that run an agent (each with its own volume: Claude's state is per volume). */
  agentSandboxIds: string[];
  /** Whether agents get a second tool call (`sleep 2`) after the restart, to be still working when followed again. */
  workAfterRestart: boolean;
}

interface RestartResult {
  healthyMs: number;
  sandboxesRunningMs: number;
  runsResumedMs: number[];
  /** The type of each run's first event after the restart. */
  firstNewTypes: string[];
  runsEndedMs: number;
  eventsPerRun: number[];
  agentLines: number;
  failures: string[];
  lost: number;
  duplicated: number;
  replayMismatches: number;
  succeeded: number;
  interrupted: number;
  otherwiseEnded: number;
  sandboxesRunningAfter: number;
}

async function main(): Promise<void> {
  const options = benchOptions();
  const restarts = options.quick ? QUICK_RESTARTS : FULL_RESTARTS;
  const workAfterRestart = !process.argv.includes('--finish-during-restart');
  const loadAtStart = loadavg();
  const fake = await FakeAnthropic.start({ delayMs: 5 });
  const dataDir = mkdtempSync(join(tmpdir(), 'restart-bench-'));
  const databaseUrl = options.database === 'postgres' ? await createDatabase() : undefined;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = {
    PORT: String(port),
    DATA_DIR: dataDir,
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    LOGIN_RATE_LIMIT: '1000',
    LOG_LEVEL: 'info',
    ANTHROPIC_BASE_URL: fake.url,
    ANTHROPIC_API_KEY: 'sk-ant-restart-bench-fake-key',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
  };
  let first: BuiltService | undefined;
  let context: Context | undefined;
  try {
    first = BuiltService.start(env);
    await first.untilHealthy(url);
    const token = await login(url, ADMIN.email, ADMIN.password);
    const client = api(url, token);
    context = { env, url, token, client, fake, service: first, sandboxIds: [], agentSandboxIds: [], workAfterRestart };
    for (let index = 0; index < SANDBOXES; index++) {
      const id = await createSandbox(client, index < RUNS ? { volume_name: `agent-${index}` } : {});
      context.sandboxIds.push(id);
      if (index < RUNS) context.agentSandboxIds.push(id);
    }
    const results: RestartResult[] = [];
    for (let iteration = 0; iteration < restarts; iteration++) {
      results.push(await restartWithWork(context, iteration));
      console.error(`restart ${iteration + 1}/${restarts}: healthy ${ms(results[iteration].healthyMs)} ms, runs resumed ${ms(Math.max(...results[iteration].runsResumedMs))} ms`);
    }
    await terminateAll(context);
    const baseline: number[] = [];
    for (let iteration = 0; iteration < (options.quick ? BASELINE_RESTARTS.quick : BASELINE_RESTARTS.full); iteration++) baseline.push(await restartEmpty(context));
    report({ results, baseline, setting: `${options.database}${workAfterRestart ? '' : ', --finish-during-restart'}`, loadAtStart, loadAtEnd: loadavg() });
  } finally {
    if (context) await cleanUp(context).catch((error: Error) => console.error(`cleanup: ${error.message}`));
    const last = context?.service ?? first;
    if (last) await last.stop();
    await fake.stop();
    if (databaseUrl) await dropDatabase(databaseUrl);
    unmountUnder(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function createSandbox(client: Client, body: Record<string, unknown>): Promise<string> {
  const created = await client.post('/api/sandboxes', { timeout_seconds: 7200, ...body });
  if (created.status !== 201) throw new Error(`create answered ${created.status}: ${created.text}`);
  return created.body.data.sandbox_id as string;
}

const eventsUrl = (context: Context, sandboxId: string, runId: string) => `${context.url}/api/sandboxes/${sandboxId}/runs/${runId}/events`;
const toolUsed = (event: TimedEvent) => event.event === 'assistant' && (JSON.parse(event.data) as { message: { content: Array<{ type: string }> } }).message.content.some((block) => block.type === 'tool_use');

/** The agent's first tool call: wait until the time written to `file` (epoch ms), then end. */
function toolTurn(file: string): FakeReply {
  const command = `until [ -s ${file} ] && [ "$(date +%s%3N)" -ge "$(cat ${file})" ]; do sleep 0.02; done; echo resumed`;
  return { content: [{ type: 'text', text: 'Waiting for the signal.' }, { type: 'tool_use', name: 'Bash', input: { command, description: 'wait for the signal' } }] };
}

/** Work after the restart: a tool call that takes a while. */
const WORK_TURN: FakeReply = { content: [{ type: 'text', text: 'Now some work.' }, { type: 'tool_use', name: 'Bash', input: { command: 'sleep 2; echo worked', description: 'work' } }] };
const FINAL_TURN: FakeReply = { content: [{ type: 'text', text: FINAL_TEXT }] };

async function restartWithWork(context: Context, iteration: number): Promise<RestartResult> {
  const { client, fake } = context;
  const signalFile = `${DEFAULT_MOUNT_PATH}/.restart-bench-signal-${iteration}`;
  const times = (reply: FakeReply) => Array.from({ length: RUNS }, () => reply);
  fake.reset();
  // Conversation requests take replies in arrival order: every run asks first (signal tool) before any asks again.
  fake.script([...times(toolTurn(signalFile)), ...(context.workAfterRestart ? times(WORK_TURN) : []), ...times(FINAL_TURN)]);
  const runIds: string[] = [];
  for (const sandboxId of context.agentSandboxIds) {
    const started = await client.post(`/api/sandboxes/${sandboxId}/runs`, { prompt: 'Wait for the signal, then finish.', include_partial_messages: true, resume: false });
    if (started.status !== 202) throw new Error(`starting a run answered ${started.status}: ${started.text}`);
    runIds.push(started.body.data.run_id as string);
  }
  const before = runIds.map((runId, index) => new SseConnection(eventsUrl(context, context.agentSandboxIds[index], runId), context.token));
  const inTool = await withTimeout(Promise.all(before.map((connection) => connection.until(toolUsed))), 120_000, 'the agents reaching their tool call', () =>
    before.map((connection, index) => `run ${runIds[index]}: ${connection.events.map((event) => event.event).join(' ')}`).concat(`model requests: ${fake.conversationRequests.length} conversation, ${fake.requests.length} in all`).join('\n'),
  );
  if (inTool.some((event) => event === undefined)) throw new Error(`a run's stream ended before its tool call: ${before.map((connection) => connection.failure).join('; ')}`);

  // Tell every agent when its tool ends (just after the kill), then kill the service.
  const toolsEndAt = Math.round(epochNow() + SIGNAL_LEAD_MS);
  const killAt = toolsEndAt - TOOL_ENDS_AFTER_KILL_MS;
  await Promise.all(context.agentSandboxIds.map((sandboxId) => exec(client, sandboxId, `printf %s ${toolsEndAt} > ${signalFile}`)));
  if (epochNow() > killAt) throw new Error('writing the signal took longer than its lead; the tools may end before the kill');
  await sleep(killAt - epochNow());
  if (before.some((connection) => connection.events.some((event) => event.event === 'user'))) throw new Error('a tool ended before the kill');
  const exited = once(context.service.child, 'exit');
  context.service.child.kill('SIGKILL');
  await exited;
  for (const connection of before) connection.close();
  await Promise.all(before.map((connection) => connection.ended));

  const service = BuiltService.start(context.env);
  context.service = service;
  const healthyAt = await service.untilHealthy(context.url);
  const after = runIds.map(
    (runId, index) => new SseConnection(eventsUrl(context, context.agentSandboxIds[index], runId), context.token, before[index].events[before[index].events.length - 1]?.id),
  );
  const [sandboxesRunningAt, firstNew] = await Promise.all([
    allSandboxesRunning(context),
    // Everything up to the kill was delivered (the agents sat in their tool), so any event now comes from the new service.
    withTimeout(Promise.all(after.map((connection) => connection.until(() => true))), RUN_TIMEOUT_MS, 'the first new event of every run'),
  ]);
  if (firstNew.some((event) => event === undefined)) throw new Error(`a run's stream ended without a new event: ${after.map((connection) => connection.failure).join('; ')}`);
  await withTimeout(Promise.all(after.map((connection) => connection.ended)), RUN_TIMEOUT_MS, 'the runs ending');
  const runsEndedAt = Math.max(...after.map((connection) => connection.events[connection.events.length - 1]?.receivedAt ?? Number.NaN));

  const check = await checkRuns(context, runIds, before, after);
  if (check.failures.length > 0) console.error(`${check.failures.join('\n')}\n${warnings(service)}`);
  return {
    healthyMs: healthyAt - service.spawnedAt,
    sandboxesRunningMs: sandboxesRunningAt - service.spawnedAt,
    runsResumedMs: firstNew.map((event) => event!.receivedAt - service.spawnedAt),
    firstNewTypes: firstNew.map((event) => event!.event),
    runsEndedMs: runsEndedAt - service.spawnedAt,
    ...check,
    sandboxesRunningAfter: (await Promise.all(context.sandboxIds.map((id) => sandboxStatus(context.client, id)))).filter((status) => status === 'running').length,
  };
}

/** Polls every sandbox (GET) until each has answered `running`; returns when the last one did. Any other state fails. */
async function allSandboxesRunning(context: Context): Promise<number> {
  const pending = new Set(context.sandboxIds);
  let lastAt = epochNow();
  const deadline = Date.now() + 60_000;
  while (pending.size > 0) {
    if (Date.now() > deadline) throw new Error(`${pending.size} sandboxes never answered running`);
    await Promise.all(
      [...pending].map(async (id) => {
        const status = await sandboxStatus(context.client, id);
        if (status === 'running') {
          pending.delete(id);
          lastAt = Math.max(lastAt, epochNow());
        } else if (status !== 'creating') throw new Error(`sandbox ${id} is ${status} after the restart`);
      }),
    );
  }
  return lastAt;
}

async function sandboxStatus(client: Client, id: string): Promise<string> {
  const response = await client.get(`/api/sandboxes/${id}`);
  return response.status === 200 ? (response.body.data.status as string) : `HTTP ${response.status}`;
}

/**
 * Every run: the events streamed before and after the restart are 1..n once each and equal to a full
 * replay; every line its agent wrote to stdout is one of them; its final state.
 */
async function checkRuns(context: Context, runIds: string[], before: SseConnection[], after: SseConnection[]) {
  let lost = 0;
  let duplicated = 0;
  let replayMismatches = 0;
  let succeeded = 0;
  let interrupted = 0;
  let otherwiseEnded = 0;
  let agentLines = 0;
  const eventsPerRun: number[] = [];
  const failures: string[] = [];
  for (const [index, runId] of runIds.entries()) {
    const sandboxId = context.agentSandboxIds[index];
    const streamed = [...before[index].events, ...after[index].events];
    const seqs = streamed.map((event) => Number(event.id));
    const distinct = new Set(seqs);
    const gaps = Math.max(...seqs) - distinct.size;
    duplicated += seqs.length - distinct.size;
    const replay = await readSse(eventsUrl(context, sandboxId, runId), { token: context.token });
    const key = (event: { id?: string; event: string; data: string }) => `${event.id} ${event.event} ${event.data}`;
    if (replay.events.map(key).join('\n') !== streamed.map(key).join('\n')) replayMismatches++;
    const replaySeqs = replay.events.map((event) => Number(event.id));
    if (replaySeqs.some((seq, position) => seq !== position + 1)) replayMismatches++;
    eventsPerRun.push(replay.events.length);
    // Lines the agent wrote that never became events (beside gaps in the numbering).
    const lines = await agentStdoutLines(context, sandboxId, runId);
    const fromAgent = replay.events.filter((event) => !SERVICE_EVENTS.has(event.event)).length;
    agentLines += lines;
    lost += gaps + Math.max(0, lines - fromAgent);
    const run = (await context.client.get(`/api/sandboxes/${sandboxId}/runs/${runId}`)).body.data as { status: string; result: string | null; error: string | null };
    if (run.status === 'succeeded' && run.result === FINAL_TEXT) succeeded++;
    else if (run.status === 'interrupted') interrupted++;
    else otherwiseEnded++;
    if (run.status !== 'succeeded' || lines !== fromAgent || gaps > 0) {
      failures.push(`run ${runId}: ${run.status} (${run.error ?? run.result}); the agent wrote ${lines} stdout lines, ${fromAgent} became events; first event after the restart: ${after[index].events[0]?.event}`);
    }
  }
  return { eventsPerRun, lost, duplicated, replayMismatches, succeeded, interrupted, otherwiseEnded, agentLines, failures };
}

/** Non-empty lines of the agent's stdout log in the sandbox (each must be one event), without the wrapper's end-of-run line. */
async function agentStdoutLines(context: Context, sandboxId: string, runId: string): Promise<number> {
  const response = await context.client.post(`/api/sandboxes/${sandboxId}/exec`, { command: ['cat', `${runLogDir(runId)}/stdout`] });
  const stdout = response.body?.data?.stdout as string | undefined;
  if (response.status !== 200 || response.body.data.exit_code !== 0 || response.body.data.truncated || stdout === undefined) throw new Error(`could not read the agent's log: ${response.status} ${response.text.slice(0, 2000)}`);
  return stdout.split('\n').filter((line) => line.length > 0 && endOfRunCode(line) === undefined).length;
}

/** The service's warning and error log lines, to explain a failure. */
function warnings(service: BuiltService): string {
  return service
    .output()
    .split('\n')
    .filter((line) => /"level":(40|50|60)/.test(line))
    .join('\n');
}

async function exec(client: Client, sandboxId: string, script: string): Promise<void> {
  const response = await client.post(`/api/sandboxes/${sandboxId}/exec`, { command: ['sh', '-c', script] });
  if (response.status !== 200 || response.body.data.exit_code !== 0) throw new Error(`exec answered ${response.status}: ${response.text}`);
}

/** The baseline: kill -9 and start again with nothing to re-attach or resume; spawn → healthy. */
async function restartEmpty(context: Context): Promise<number> {
  const exited = once(context.service.child, 'exit');
  context.service.child.kill('SIGKILL');
  await exited;
  const service = BuiltService.start(context.env);
  context.service = service;
  return (await service.untilHealthy(context.url)) - service.spawnedAt;
}

/** DELETE ?sync=false of every sandbox still running, then waits until none is. */
async function terminateAll(context: Context): Promise<void> {
  if (context.service.exited) return;
  const running = async () => (await Promise.all(context.sandboxIds.map(async (id) => ((await sandboxStatus(context.client, id)) === 'running' ? id : undefined)))).filter((id): id is string => id !== undefined);
  for (const id of await running()) await context.client.delete(`/api/sandboxes/${id}?sync=false`);
  const deadline = Date.now() + 60_000;
  while ((await running()).length > 0) {
    if (Date.now() > deadline) throw new Error('sandboxes still running a minute after DELETE');
    await sleep(200);
  }
}

/** Ends every sandbox, through a service started again if the benchmark failed while none ran. */
async function cleanUp(context: Context): Promise<void> {
  if (context.service.exited) {
    context.service = BuiltService.start(context.env);
    await context.service.untilHealthy(context.url);
  }
  await terminateAll(context);
}




function report(input: { results: RestartResult[]; baseline: number[]; setting: string; loadAtStart: number[]; loadAtEnd: number[] }): void {
  const { results, baseline } = input;
  const load = (values: number[]) => values.map((value) => value.toFixed(2)).join(' ');
  const row = (label: string, samples: number[]) => {
    const summary = summarize(samples);
    return [label, ms(summary.median), ms(summary.max), samples.map(ms).join(', ')];
  };
  console.log(
    `\n### Restart with ${SANDBOXES} running sandboxes and ${RUNS} active runs (kill -9, ${input.setting}, ${results.length} restarts; load average ${load(input.loadAtStart)} → ${load(input.loadAtEnd)})\n`,
  );
  console.log(
    markdownTable(
      ['from spawning the new service process to …', 'median ms', 'max ms', 'each restart'],
      [
        row('GET /api/health answers 200', results.map((result) => result.healthyMs)),
        row(`all ${SANDBOXES} sandboxes answer \`running\` (GET /api/sandboxes/:id)`, results.map((result) => result.sandboxesRunningMs)),
        row(`**all ${RUNS} runs resumed** (each run's SSE stream, reconnected with Last-Event-ID, delivers a new event)`, results.map((result) => Math.max(...result.runsResumedMs))),
        row('each run resumed (all runs of all restarts)', results.flatMap((result) => result.runsResumedMs)),
        row(`all ${RUNS} runs ended (\`done\` received)`, results.map((result) => result.runsEndedMs)),
        row('baseline: GET /api/health 200 after kill -9 with no sandbox and no run', baseline),
      ],
      [false, true, true, false],
    ),
  );
  const sum = (pick: (result: RestartResult) => number) => results.reduce((total, result) => total + pick(result), 0);
  const totalRuns = results.length * RUNS;
  console.log('\n### Outcome (all restarts together)\n');
  console.log(
    markdownTable(
      ['check', 'result', 'expected'],
      [
        ['runs succeeded with the scripted final answer', `${sum((result) => result.succeeded)} / ${totalRuns}`, `${totalRuns} / ${totalRuns}`],
        ['runs interrupted', String(sum((result) => result.interrupted)), '0'],
        ['runs ended otherwise (failed, …)', String(sum((result) => result.otherwiseEnded)), '0'],
        ['**events lost** (agent stdout lines without an event, plus gaps in seq 1..n)', `${sum((result) => result.lost)} of ${sum((result) => result.agentLines)} lines`, '0'],
        ['events delivered twice', String(sum((result) => result.duplicated)), '0'],
        ['runs whose full replay differs from what was streamed, or is not 1..n', String(sum((result) => result.replayMismatches)), '0'],
        ['sandboxes still running after each restart', results.map((result) => `${result.sandboxesRunningAfter}/${SANDBOXES}`).join(', '), `${SANDBOXES}/${SANDBOXES}`],
        ['first event after the restart (per run)', countTypes(results.flatMap((result) => result.firstNewTypes)), ''],
        ['events per run (median, min – max)', (() => { const all = results.flatMap((result) => result.eventsPerRun); return `${summarize(all).median} (${Math.min(...all)} – ${Math.max(...all)})`; })(), ''],
      ],
      [false, true, true],
    ),
  );
  const failures = results.flatMap((result) => result.failures);
  if (failures.length > 0) console.log(`\nRuns that did not end as expected:\n\n${failures.map((failure) => `- ${failure}`).join('\n')}`);
  const ok = sum((result) => result.lost + result.duplicated + result.replayMismatches + result.interrupted + result.otherwiseEnded) === 0 && results.every((result) => result.sandboxesRunningAfter === SANDBOXES);
  console.log(`\nEvents lost: ${sum((result) => result.lost)} (target 0) → ${ok ? 'met' : 'not met'}.`);
  if (!ok) process.exitCode = 1;
}

function countTypes(types: string[]): string {
  const counts = new Map<string, number>();
  for (const type of types) counts.set(type, (counts.get(type) ?? 0) + 1);
  return [...counts].map(([type, count]) => `${type} × ${count}`).join(', ');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
