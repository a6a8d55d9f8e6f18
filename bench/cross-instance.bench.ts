/**
 * Several instances on one PostgreSQL database (issue 14): two service processes (the built
 * dist/src/main.js), A and B, with one fresh database and one DATA_DIR (so one local engine), as
 * test/run-failover.e2e-spec.ts starts them. Every run is started through A, so A executes it and
 * pushes its events to its own subscribers in-process; B serves the same stream from the rows
 * (NOTIFY on each insert → a read of the rows after the client's last seq).
 * - Delivery delay: the real Claude CLI with include_partial_messages (40 text deltas 10 ms apart
 *   from the scripted fake behind the timestamping proxy, at an outside host); for each run one SSE
 *   client on A and one on B, in this process, connected in alternating order. Per text delta:
 *   receive time − the proxy's send stamp, on each; and per event (all types) B's receive time −
 *   A's for the same seq.
 * - Fan-out: 500 SSE subscribers (250 on A, 250 on B) on one run of a few hundred events; each must
 *   receive the stored log exactly (seqs 1..n, once each, same data). Delay of the last text delta
 *   and of `done` across subscribers; CPU and RSS of both instances during that run.
 * `--fan-out-on=A` or `--fan-out-on=B` puts all 500 subscribers on one instance (a what-if: what the
 * split costs each side).
 * Build with `npm run build`, run with `node dist/bench/cross-instance.bench.js [--quick] [--fan-out-on=A|B]`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FakeAnthropic, FakeTurn } from '../test/support/fake-anthropic';
import { api } from '../test/support/http';
import { freePort } from '../test/support/service-process';
import { readSse } from '../test/support/sse-client';
import { createDatabase, dropDatabase, login } from '../test/support/test-app';
import { BuiltService, unmountUnder } from './support/built-service';
import { DELTAS_PER_REPLY, FAKE_API_KEY, PROMPT, REPLY, startOutsideModel } from './support/outside-model';
import { cpuBetween, postgresBackendsCpu } from './support/postgres-cpu';
import { SseConnection } from './support/sse-connection';
import { benchOptions, epochNow, markdownTable, ms, summarize, withTimeout } from './support/stats';
import type { TimedEvent } from './support/timed-sse';
import { stampsIn } from './support/timestamping-proxy';

const RUNS = { full: 24, quick: 6 };
const WARM_UP_RUNS = 2;
const SUBSCRIBERS = 500;
/** Text blocks in the fan-out reply, DELTAS_PER_REPLY deltas each: 320 (full) or 120 (quick) deltas. */
const FAN_OUT_BLOCKS = { full: 8, quick: 3 };
const FAN_OUT_PACE_MS = 20;
/** Fan-out runs, one after the other (each reported on its own: one run's figures move with the machine's load). */
const FAN_OUT_RUNS = { full: 2, quick: 1 };
/** The fan-out agent first runs this, so that every subscriber is connected before the deltas start. */
const FAN_OUT_WAIT = 'sleep 3';
const TARGET_P99_MS = 20;
const TARGET_RATIO = 1.5;
const RUN_TIMEOUT_MS = 180_000;
const ADMIN = { email: 'cross-instance-bench@example.test', password: 'cross-instance-bench-password-1' };

type Client = ReturnType<typeof api>;

interface Instance {
  name: 'A' | 'B';
  url: string;
  service: BuiltService;
}

interface Context {
  a: Instance;
  b: Instance;
  token: string;
  client: Client;
  sandboxId: string;
  fake: FakeAnthropic;
  databaseUrl: string;
}

interface RunTiming {
  /** Receive time − proxy stamp per text delta, client of A (same instance) and of B (other instance). */
  onA: number[];
  onB: number[];
  /** B's receive time − A's, per event (every type), same seq. */
  bMinusA: number[];
  events: number;
}

async function main(): Promise<void> {
  const options = benchOptions();
  const runs = options.quick ? RUNS.quick : RUNS.full;
  const blocks = options.quick ? FAN_OUT_BLOCKS.quick : FAN_OUT_BLOCKS.full;
  const fanOutOn = (process.argv.find((arg) => arg.startsWith('--fan-out-on='))?.slice('--fan-out-on='.length) ?? 'AB') as FanOutPlacement;
  if (!['A', 'B', 'AB'].includes(fanOutOn)) throw new Error('--fan-out-on must be A, B or AB');
  const loadAtStart = loadavg();
  const startedAt = new Date().toISOString();
  const { fake, proxy, stop: stopModel } = await startOutsideModel();
  const dataDir = mkdtempSync(join(tmpdir(), 'cross-instance-bench-'));
  const databaseUrl = await createDatabase();
  const common = {
    DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    LOGIN_RATE_LIMIT: '1000',
    LOG_LEVEL: 'info',
    ANTHROPIC_BASE_URL: proxy.url,
    ANTHROPIC_API_KEY: FAKE_API_KEY,
  };
  const instances: Instance[] = [];
  let context: Context | undefined;
  try {
    // One after the other: the first runs the migrations.
    for (const name of ['A', 'B'] as const) {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const service = BuiltService.start({ ...common, PORT: String(port), INSTANCE_ID: `bench-${name.toLowerCase()}` });
      instances.push({ name, url, service });
      await service.untilHealthy(url);
    }
    const [a, b] = instances;
    const token = await login(a.url, ADMIN.email, ADMIN.password);
    const client = api(a.url, token);
    const created = await client.post('/api/sandboxes', {});
    if (created.status !== 201) throw new Error(`create answered ${created.status}: ${created.text}`);
    context = { a, b, token, client, sandboxId: created.body.data.sandbox_id as string, fake, databaseUrl };

    for (let index = 0; index < WARM_UP_RUNS; index++) await measureRun(context, index);
    const timings: RunTiming[] = [];
    for (let index = 0; index < runs; index++) timings.push(await measureRun(context, index));
    const loadAfterDelay = loadavg();
    const fanOuts: Array<{ fanOut: FanOut; load: number[] }> = [];
    for (let index = 0; index < (options.quick ? FAN_OUT_RUNS.quick : FAN_OUT_RUNS.full); index++) fanOuts.push({ fanOut: await fanOutRun(context, blocks, fanOutOn), load: loadavg() });
    reportDelay(timings, { startedAt, loadAtStart, loadAtEnd: loadAfterDelay });
    fanOuts.forEach(({ fanOut, load }, index) => reportFanOut(fanOut, load, `${index + 1} of ${fanOuts.length}`));
  } finally {
    if (context) await deleteSandbox(context).catch((error: Error) => console.error(`cleanup: ${error.message}`));
    for (const instance of instances.reverse()) await instance.service.stop();
    await stopModel();
    await dropDatabase(databaseUrl);
    unmountUnder(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const eventsUrl = (context: Context, instance: Instance, runId: string) => `${instance.url}/api/sandboxes/${context.sandboxId}/runs/${runId}/events`;
const key = (event: { id?: string; event: string; data: string }) => `${event.id} ${event.event} ${event.data}`;

/** Through A (which then executes it); returns the run id. */
async function startRun(context: Context): Promise<string> {
  const response = await context.client.post(`/api/sandboxes/${context.sandboxId}/runs`, { prompt: PROMPT, include_partial_messages: true, resume: false });
  if (response.status !== 202) throw new Error(`starting a run answered ${response.status}: ${response.text}`);
  return response.body.data.run_id as string;
}

function assertSucceeded(events: TimedEvent[], where: string): void {
  const last = events[events.length - 1];
  const status = last?.event === 'done' ? (JSON.parse(last.data) as { status: string }).status : 'no done event';
  if (status !== 'succeeded') throw new Error(`run ended ${status} (stream of ${where}): ${events.filter((event) => event.event === 'error').map((event) => event.data).join('; ')}`);
}

function deltaDelays(events: TimedEvent[]): number[] {
  return events.filter((event) => event.event === 'stream_event').flatMap((event) => stampsIn(event.data).map((sent) => event.receivedAt - sent));
}

/** One run started on A, followed by one client on A and one on B (connected in alternating order). */
async function measureRun(context: Context, index: number): Promise<RunTiming> {
  context.fake.script([REPLY]);
  const runId = await startRun(context);
  const order = index % 2 === 0 ? [context.a, context.b] : [context.b, context.a];
  const [first, second] = order.map((instance) => new SseConnection(eventsUrl(context, instance, runId), context.token));
  const [onA, onB] = index % 2 === 0 ? [first, second] : [second, first];
  await withTimeout(Promise.all([onA.ended, onB.ended]), RUN_TIMEOUT_MS, 'the run to end on both streams');
  assertSucceeded(onA.events, 'A');
  assertSucceeded(onB.events, 'B');
  if (onA.events.map(key).join('\n') !== onB.events.map(key).join('\n')) throw new Error(`run ${runId}: A and B streamed different events`);
  if (onA.events.some((event, position) => Number(event.id) !== position + 1)) throw new Error(`run ${runId}: seqs are not 1..n`);
  const deltas = deltaDelays(onA.events);
  if (deltas.length !== DELTAS_PER_REPLY) throw new Error(`run ${runId}: ${deltas.length} stamped deltas, expected ${DELTAS_PER_REPLY}`);
  return {
    onA: deltas,
    onB: deltaDelays(onB.events),
    bMinusA: onB.events.map((event, position) => event.receivedAt - onA.events[position].receivedAt),
    events: onA.events.length,
  };
}

/** Where the fan-out subscribers connect: alternately to A and B, or all to one. */
type FanOutPlacement = 'A' | 'B' | 'AB';

interface Usage {
  cpuSeconds: number;
  rssBefore: number;
  rssAfter: number;
}

interface FanOut {
  eventsInRun: number;
  deltasInRun: number;
  subscribers: Array<{ instance: 'A' | 'B'; connection: SseConnection }>;
  /** Per subscriber: exactly the stored log (seqs 1..n once each, same types and data). */
  complete: boolean[];
  /** Subscribers whose stream opened after the first delta was sent (they got a replay first). */
  joinedLate: number;
  lastOpenedAfterStartMs: number;
  firstDeltaAfterStartMs: number;
  lastDeltaSeq: number;
  lastStamp: number;
  wallSeconds: number;
  usage: Record<'A' | 'B', Usage>;
  clientCpuSeconds: number;
  postgresCpuSeconds: number;
  /** epochNow() just before the POST. */
  started: number;
}

/** SUBSCRIBERS clients, alternately on A and B, follow one run started on A. */
async function fanOutRun(context: Context, blocks: number, placement: FanOutPlacement): Promise<FanOut> {
  const text: FakeTurn = { content: Array.from({ length: blocks }, () => REPLY.content[0]), delayMs: FAN_OUT_PACE_MS };
  context.fake.script([{ content: [{ type: 'tool_use', name: 'Bash', input: { command: FAN_OUT_WAIT, description: 'wait' } }] }, text]);
  const postgresBefore = await postgresBackendsCpu(context.databaseUrl);
  const before = { A: snapshot(context.a), B: snapshot(context.b) };
  const clientCpu = process.cpuUsage();
  const started = epochNow();
  const runId = await startRun(context);
  const subscribers = Array.from({ length: SUBSCRIBERS }, (_, index) => {
    const instance = placement === 'A' || (placement === 'AB' && index % 2 === 0) ? context.a : context.b;
    return { instance: instance.name, connection: new SseConnection(eventsUrl(context, instance, runId), context.token) };
  });
  const ended = await withTimeout(Promise.all(subscribers.map(({ connection }) => connection.ended)), RUN_TIMEOUT_MS, 'every subscriber to receive done', () =>
    `${subscribers.filter(({ connection }) => connection.events.at(-1)?.event !== 'done').length} subscribers without done`,
  );
  const wallSeconds = (epochNow() - started) / 1000;
  const clientCpuUsed = process.cpuUsage(clientCpu);
  const after = { A: snapshot(context.a), B: snapshot(context.b) };
  const postgresCpuSeconds = cpuBetween(postgresBefore, await postgresBackendsCpu(context.databaseUrl));
  const failures = subscribers.filter((_, index) => !ended[index]).map(({ connection }) => connection.failure);
  if (failures.length > 0) console.error(`${failures.length} subscribers ended without done: ${[...new Set(failures)].slice(0, 5).join('; ')}`);

  const stored = await readSse(eventsUrl(context, context.b, runId), { token: context.token });
  assertSucceeded(stored.events.map((event) => ({ ...event, receivedAt: 0 })), 'replay');
  if (stored.events.some((event, position) => Number(event.id) !== position + 1)) throw new Error('the stored log is not seqs 1..n');
  const expected = stored.events.map(key).join('\n');
  const stamped = stored.events.filter((event) => event.event === 'stream_event' && stampsIn(event.data).length > 0);
  const firstStamp = stampsIn(stamped[0].data)[0];
  const last = stamped[stamped.length - 1];
  const opened = subscribers.map(({ connection }) => connection.openedAt ?? Number.POSITIVE_INFINITY);
  const usage = (name: 'A' | 'B'): Usage => ({ cpuSeconds: after[name].cpu - before[name].cpu, rssBefore: before[name].rss, rssAfter: after[name].rss });
  return {
    eventsInRun: stored.events.length,
    deltasInRun: stamped.length,
    subscribers,
    complete: subscribers.map(({ connection }) => connection.events.map(key).join('\n') === expected),
    joinedLate: opened.filter((time) => time > firstStamp).length,
    lastOpenedAfterStartMs: Math.max(...opened) - started,
    firstDeltaAfterStartMs: firstStamp - started,
    lastDeltaSeq: Number(last.id),
    lastStamp: stampsIn(last.data)[0],
    wallSeconds,
    usage: { A: usage('A'), B: usage('B') },
    clientCpuSeconds: (clientCpuUsed.user + clientCpuUsed.system) / 1e6,
    postgresCpuSeconds,
    started,
  };
}

function snapshot(instance: Instance): { cpu: number; rss: number } {
  return { cpu: instance.service.cpuSeconds(), rss: instance.service.residentMiB() };
}

/** DELETE ?sync=false through whichever instance still runs, then waits until the sandbox is no longer running. */
async function deleteSandbox(context: Context): Promise<void> {
  const instance = [context.a, context.b].find((candidate) => !candidate.service.exited);
  if (!instance) return;
  const client = api(instance.url, context.token);
  await client.delete(`/api/sandboxes/${context.sandboxId}?sync=false`);
  const deadline = Date.now() + 60_000;
  while ((await client.get(`/api/sandboxes/${context.sandboxId}`)).body?.data?.status === 'running') {
    if (Date.now() > deadline) throw new Error('the sandbox still runs a minute after DELETE');
    await sleep(200);
  }
}

const load = (values: number[]) => values.map((value) => value.toFixed(2)).join(' ');

function delayRow(label: string, samples: number[], unit = 'deltas'): string[] {
  const summary = summarize(samples);
  return [label, ms(summary.median), ms(summary.p95), ms(summary.p99), ms(summary.max), `${summary.runs} ${unit}`];
}

function reportDelay(timings: RunTiming[], conditions: { startedAt: string; loadAtStart: number[]; loadAtEnd: number[] }): void {
  const onA = timings.flatMap((timing) => timing.onA);
  const onB = timings.flatMap((timing) => timing.onB);
  const bMinusA = timings.flatMap((timing) => timing.bMinusA);
  const same = summarize(onA);
  const cross = summarize(onB);
  console.log(
    `\n### Delivery delay: run executed on A, one SSE client on A and one on B (${timings.length} runs after ${WARM_UP_RUNS} warm-up, ` +
      `${DELTAS_PER_REPLY} text deltas 10 ms apart each; started ${conditions.startedAt}; load average ${load(conditions.loadAtStart)} → ${load(conditions.loadAtEnd)})\n`,
  );
  console.log(
    markdownTable(
      ['receiver (same events, same runs)', 'median ms', 'p95 ms', 'p99 ms', 'max ms', 'samples'],
      [
        delayRow('proxy sends a delta → SSE client of **A** (same instance: in-process push)', onA),
        delayRow('proxy sends a delta → SSE client of **B** (other instance: NOTIFY, then a read of the rows)', onB),
        delayRow('same event: B receives it − A receives it (every event of the run)', bMinusA, 'events'),
      ],
      [false, true, true, true, true, true],
    ),
  );
  const added = cross.p99 - same.p99;
  const ratio = cross.p99 / same.p99;
  console.log(
    `\nAdded by the other instance: median ${ms(cross.median - same.median)} ms, **p99 ${ms(added)} ms**; p99 ratio B / A **${ratio.toFixed(2)}**. ` +
      `Targets: cross-instance p99 ≤ ${TARGET_P99_MS} ms → ${ms(cross.p99)} ms (${cross.p99 <= TARGET_P99_MS ? 'met' : 'not met'}); ` +
      `≤ ${TARGET_RATIO}× same-instance → ${ratio <= TARGET_RATIO ? 'met' : 'not met'}.`,
  );
}

function reportFanOut(fanOut: FanOut, loadAtEnd: number[], which: string): void {
  const on = (name: 'A' | 'B') => fanOut.subscribers.map((subscriber, index) => ({ ...subscriber, complete: fanOut.complete[index] })).filter((subscriber) => subscriber.instance === name);
  const placed = (['A', 'B'] as const).filter((name) => on(name).length > 0);
  const doneAt = fanOut.subscribers.map(({ connection }) => connection.events.at(-1)?.receivedAt ?? Number.NaN);
  const firstDone = Math.min(...doneAt);
  const lastDelta = (connection: SseConnection) => {
    const event = connection.events.find((candidate) => Number(candidate.id) === fanOut.lastDeltaSeq);
    return event ? event.receivedAt - fanOut.lastStamp : Number.NaN;
  };
  console.log(
    `\n### ${SUBSCRIBERS} SSE subscribers on one run executed on A (fan-out run ${which}: ${on('A').length} on A, ${on('B').length} on B; ${fanOut.deltasInRun} text deltas ${FAN_OUT_PACE_MS} ms apart; ` +
      `${fanOut.wallSeconds.toFixed(1)} s from POST to the last \`done\`; load average after ${load(loadAtEnd)})\n`,
  );
  console.log(
    markdownTable(
      ['instance', 'subscribers', 'events in the run', 'with every event exactly once (seqs 1..n, = stored log)', 'fewest received', 'most received', 'streams open after POST: median / last'],
      placed.map((name) => {
        const group = on(name);
        const counts = group.map(({ connection }) => connection.events.length);
        const opened = summarize(group.map(({ connection }) => (connection.openedAt ?? Number.NaN) - fanOut.started));
        return [
          name,
          String(group.length),
          String(fanOut.eventsInRun),
          String(group.filter((subscriber) => subscriber.complete).length),
          String(Math.min(...counts)),
          String(Math.max(...counts)),
          `${ms(opened.median)} / ${ms(opened.max)} ms`,
        ];
      }),
    ),
  );
  console.log(
    `\nThe last of the ${SUBSCRIBERS} streams opened ${ms(fanOut.lastOpenedAfterStartMs)} ms after the POST, the first delta was sent ${ms(fanOut.firstDeltaAfterStartMs)} ms after it; ` +
      `${fanOut.joinedLate} streams opened after the first delta (those get a replay first).\n`,
  );
  const rows: string[][] = [];
  for (const name of placed) {
    const group = on(name).map(({ connection }) => connection);
    rows.push(delayRow(`every text delta, subscribers of ${name}`, group.flatMap((connection) => deltaDelays(connection.events))));
  }
  for (const name of placed) {
    rows.push(delayRow(`last text delta (seq ${fanOut.lastDeltaSeq}), subscribers of ${name}`, on(name).map(({ connection }) => lastDelta(connection)), 'subscribers'));
  }
  for (const name of placed) {
    rows.push(delayRow(`\`done\` after the first subscriber received it, subscribers of ${name}`, on(name).map(({ connection }) => (connection.events.at(-1)?.receivedAt ?? Number.NaN) - firstDone), 'subscribers'));
  }
  console.log(markdownTable(['delay (proxy stamp → subscriber, or first `done` → subscriber)', 'median ms', 'p95 ms', 'p99 ms', 'max ms', 'samples'], rows, [false, true, true, true, true, true]));
  console.log('');
  console.log(
    markdownTable(
      ['process', 'CPU during the run (s)', 'share of one core', 'RSS before → after (MiB)'],
      [
        ...(['A', 'B'] as const).map((name) => {
          const usage = fanOut.usage[name];
          return [`instance ${name}`, usage.cpuSeconds.toFixed(2), `${((100 * usage.cpuSeconds) / fanOut.wallSeconds).toFixed(0)} %`, `${usage.rssBefore.toFixed(0)} → ${usage.rssAfter.toFixed(0)}`];
        }),
        ['PostgreSQL backends of the database (both instances’ pools and listeners)', fanOut.postgresCpuSeconds.toFixed(2), `${((100 * fanOut.postgresCpuSeconds) / fanOut.wallSeconds).toFixed(0)} %`, ''],
        [`this benchmark (the ${SUBSCRIBERS} clients, proxy, fake)`, fanOut.clientCpuSeconds.toFixed(2), `${((100 * fanOut.clientCpuSeconds) / fanOut.wallSeconds).toFixed(0)} %`, ''],
      ],
    ),
  );
  const complete = fanOut.complete.filter(Boolean).length;
  console.log(`\nEvery subscriber received every event exactly once: ${complete} / ${SUBSCRIBERS} → ${complete === SUBSCRIBERS ? 'met' : 'not met'}.`);
  if (complete !== SUBSCRIBERS) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
