/**
 * Cost of starting a child process from Node as the process's resident memory grows. Every sandbox
 * start and every exec spawns from the service, and the service with PGlite holds ~0.9 GiB, so
 * this explains part of the gap between the engine alone and the HTTP API.
 * Build with `npm run build`, run with `node dist/bench/spawn-cost.bench.js [--quick]`.
 */
import { spawn } from 'node:child_process';
import { benchOptions, markdownTable, ms, summarize } from './support/stats';

const MIB = 1024 * 1024;
const RESIDENT_STEPS_MIB = [0, 256, 1024];
const CHUNK_MIB = 64;

interface SpawnTiming {
  /** The synchronous spawn() call: the event loop is blocked meanwhile. */
  blockedMs: number;
  /** spawn() to the child's exit. */
  totalMs: number;
}

function spawnTrue(): Promise<SpawnTiming> {
  const started = performance.now();
  const child = spawn('/bin/true', { stdio: 'ignore' });
  const blockedMs = performance.now() - started;
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', () => resolve({ blockedMs, totalMs: performance.now() - started }));
  });
}

async function main(): Promise<void> {
  const runs = benchOptions().quick ? 10 : 30;
  const held: Buffer[] = [];
  const rows: string[][] = [];
  for (const extraMiB of RESIDENT_STEPS_MIB) {
    while (held.length * CHUNK_MIB < extraMiB) held.push(Buffer.alloc(CHUNK_MIB * MIB, 1));
    const timings: SpawnTiming[] = [];
    for (let run = 0; run < runs; run++) timings.push(await spawnTrue());
    const blocked = summarize(timings.map((timing) => timing.blockedMs));
    const total = summarize(timings.map((timing) => timing.totalMs));
    const residentMiB = (process.memoryUsage().rss / MIB).toFixed(0);
    rows.push([`${residentMiB} MiB`, ms(blocked.median), ms(blocked.p95), ms(total.median), ms(total.p95)]);
  }
  console.log(`\n### Spawning \`/bin/true\` from Node by resident memory of the parent (${runs} runs each)\n`);
  console.log(markdownTable(['parent RSS', 'spawn() call (event loop blocked) median ms', 'p95 ms', 'spawn → exit median ms', 'p95 ms'], rows));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
