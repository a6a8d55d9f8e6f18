/**
 * Sandbox latency through the HTTP API of a warm service: create → first exec output → delete,
 * beside a raw bubblewrap start measured in the same loop (the machine's noise hits both alike).
 * Build with `npm run build`, run with `node dist/bench/sandbox-http.bench.js [--quick] [--postgres]`.
 */
import { spawn } from 'node:child_process';
import { api } from '../test/support/http';
import { BenchService } from './support/bench-service';
import { benchOptions, markdownTable, ms, summarize, timed } from './support/stats';

const WARM_UP_RUNS = 5;
const FULL_RUNS = 50;
const QUICK_RUNS = 20;
const TARGET_CREATE_AND_EXEC_MS = 50;
/** The reference a sandbox is compared with: a bare bubblewrap container running one command. */
const RAW_BWRAP = ['/usr/bin/bwrap', '--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc', '--unshare-pid', 'true'];

type Client = ReturnType<typeof api>;

interface CycleTimes {
  create: number;
  firstExec: number;
  createAndFirstExec: number;
  repeatExec: number;
  delete: number;
  cycle: number;
}

async function main(): Promise<void> {
  const options = benchOptions();
  const runs = options.quick ? QUICK_RUNS : FULL_RUNS;
  const service = await BenchService.start({ database: options.database });
  try {
    const client = api(service.url, service.adminToken);
    for (let run = 0; run < WARM_UP_RUNS; run++) {
      await sandboxCycle(client);
      await rawBwrap();
    }
    const cycles: CycleTimes[] = [];
    const raw: number[] = [];
    const health: number[] = [];
    for (let run = 0; run < runs; run++) {
      cycles.push(await sandboxCycle(client));
      raw.push(await rawBwrap());
      health.push((await timed(() => expectStatus(client.get('/api/health'), 200, 'health'))).ms);
    }
    report(cycles, raw, health, `${options.database}, service RSS ${service.residentMiB().toFixed(0)} MiB`);
  } finally {
    await service.stop();
  }
}

/** One sandbox's life through the API; every step must succeed, or the benchmark stops. */
async function sandboxCycle(client: Client): Promise<CycleTimes> {
  const started = performance.now();
  const created = await expectStatus(client.post('/api/sandboxes', {}), 201, 'create');
  const createdAt = performance.now();
  const sandboxId = created.body.data.sandbox_id as string;
  await execEcho(client, sandboxId);
  const firstOutputAt = performance.now();
  await execEcho(client, sandboxId);
  const repeatAt = performance.now();
  await expectStatus(client.delete(`/api/sandboxes/${sandboxId}`), 200, 'delete');
  const deletedAt = performance.now();
  return {
    create: createdAt - started,
    firstExec: firstOutputAt - createdAt,
    createAndFirstExec: firstOutputAt - started,
    repeatExec: repeatAt - firstOutputAt,
    delete: deletedAt - repeatAt,
    cycle: deletedAt - started - (repeatAt - firstOutputAt),
  };
}

async function execEcho(client: Client, sandboxId: string): Promise<void> {
  const response = await expectStatus(client.post(`/api/sandboxes/${sandboxId}/exec`, { command: ['echo', 'ok'] }), 200, 'exec');
  if (response.body.data.stdout !== 'ok\n') throw new Error(`exec printed ${JSON.stringify(response.body.data.stdout)} instead of "ok"`);
}

async function expectStatus<T extends { status: number; text: string }>(request: Promise<T>, status: number, step: string): Promise<T> {
  const response = await request;
  if (response.status !== status) throw new Error(`${step} answered ${response.status}: ${response.text}`);
  return response;
}

function rawBwrap(): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(RAW_BWRAP[0], RAW_BWRAP.slice(1), { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(performance.now() - started) : reject(new Error(`raw bwrap exited with ${code}`))));
  });
}

function report(cycles: CycleTimes[], raw: number[], health: number[], setting: string): void {
  const column = (key: keyof CycleTimes) => cycles.map((cycle) => cycle[key]);
  const rows: Array<[string, number[]]> = [
    ['create (POST /api/sandboxes → 201)', column('create')],
    ['first exec (POST …/exec `echo ok` → output)', column('firstExec')],
    ['**create + first exec output**', column('createAndFirstExec')],
    ['exec on the running sandbox (second exec)', column('repeatExec')],
    ['delete (DELETE /api/sandboxes/:id)', column('delete')],
    ['create → first exec output → delete', column('cycle')],
    [`raw \`bwrap ${RAW_BWRAP.slice(1).join(' ')}\``, raw],
    ['HTTP floor: GET /api/health (database ping)', health],
  ];
  const createAndExec = summarize(column('createAndFirstExec'));
  const rawSummary = summarize(raw);
  console.log(`\n### Sandbox lifecycle through the HTTP API (local engine, ${setting}, ${cycles.length} runs after ${WARM_UP_RUNS} warm-up)\n`);
  console.log(
    markdownTable(
      ['measure', 'median ms', 'p95 ms', 'min ms', 'max ms'],
      rows.map(([label, samples]) => {
        const summary = summarize(samples);
        return [label, ms(summary.median), ms(summary.p95), ms(summary.min), ms(summary.max)];
      }),
    ),
  );
  const verdict = createAndExec.median <= TARGET_CREATE_AND_EXEC_MS ? 'met' : 'not met';
  console.log(
    `\nTarget: median create + first exec ≤ ${TARGET_CREATE_AND_EXEC_MS} ms → ${ms(createAndExec.median)} ms (${verdict}); ` +
      `${(createAndExec.median / rawSummary.median).toFixed(1)}× the raw bwrap median (${ms(rawSummary.median)} ms).`,
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
