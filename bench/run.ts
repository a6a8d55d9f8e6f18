/**
 * Runs every benchmark, one after the other, each in its own process, and prints the results as
 * markdown. `npm run bench` (build, then this), or after a build:
 *   node dist/bench/run.js [--quick] [--only=sandbox-http,local-provider,spawn-cost,claude-runs,model-gateway,snapshot,run-log,restart,cross-instance,modal-runs,registry-images]
 * HTTP-level benchmarks run once with PGlite (the default database) and once with PostgreSQL
 * (a throwaway database on 127.0.0.1:5432, as the e2e suite uses).
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpus, freemem, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { markdownTable } from './support/stats';

interface Step {
  name: string;
  title: string;
  script: string;
  args: (quick: boolean) => string[];
  /** Turns the script's own output into markdown. */
  format?: (output: string) => string;
}

const STEPS: Step[] = [
  { name: 'sandbox-http', title: 'Sandboxes through the API, PGlite', script: 'sandbox-http.bench.js', args: quickFlag },
  { name: 'sandbox-http', title: 'Sandboxes through the API, PostgreSQL', script: 'sandbox-http.bench.js', args: (quick) => [...quickFlag(quick), '--postgres'] },
  { name: 'local-provider', title: 'Sandboxes through the engine alone (no HTTP, no database)', script: 'local-provider.bench.js', args: (quick) => [quick ? '20' : '50'], format: providerTable },
  { name: 'spawn-cost', title: 'Cost of spawning a child process by parent memory', script: 'spawn-cost.bench.js', args: quickFlag },
  { name: 'claude-runs', title: 'Claude runs, PGlite', script: 'claude-runs.bench.js', args: quickFlag },
  { name: 'claude-runs', title: 'Claude runs, PostgreSQL', script: 'claude-runs.bench.js', args: (quick) => [...quickFlag(quick), '--postgres'] },
  { name: 'model-gateway', title: 'Model gateway, PGlite', script: 'model-gateway.bench.js', args: quickFlag },
  { name: 'snapshot', title: 'Snapshots', script: 'snapshot.bench.js', args: quickFlag },
  { name: 'run-log', title: 'Claude runs: following the run log against the direct pipe', script: 'run-log.bench.js', args: quickFlag },
  { name: 'restart', title: 'Restart with running sandboxes and runs, PGlite', script: 'restart.bench.js', args: quickFlag },
  { name: 'restart', title: 'Restart with running sandboxes and runs, PostgreSQL', script: 'restart.bench.js', args: (quick) => [...quickFlag(quick), '--postgres'] },
  { name: 'cross-instance', title: 'Several instances on one PostgreSQL database', script: 'cross-instance.bench.js', args: quickFlag },
  { name: 'modal-runs', title: 'Claude runs on the Modal engine (fake control plane), PGlite', script: 'modal-runs.bench.js', args: quickFlag },
  { name: 'registry-images', title: 'Registry images on the local engine (~100 MiB image, loopback registry), PGlite', script: 'registry-images.bench.js', args: quickFlag },
];

function quickFlag(quick: boolean): string[] {
  return quick ? ['--quick'] : [];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const quick = argv.includes('--quick');
  const only = argv.find((arg) => arg.startsWith('--only='))?.slice('--only='.length).split(',');
  const steps = STEPS.filter((step) => !only || only.includes(step.name));
  console.log(`# Benchmark results (${new Date().toISOString()}${quick ? ', --quick' : ''})\n`);
  console.log(machineTable());
  const failed: string[] = [];
  for (const step of steps) {
    console.log(`\n## ${step.title}\n`);
    const started = performance.now();
    const { code, output } = await runScript(step.script, step.args(quick));
    console.log((step.format ?? ((text: string) => text))(output).trim());
    console.log(`\n_${step.script} ${step.args(quick).join(' ')}: ${((performance.now() - started) / 1000).toFixed(0)} s, load average after ${loadavg().map((load) => load.toFixed(2)).join(' ')}_`);
    if (code !== 0) failed.push(step.title);
  }
  if (failed.length > 0) {
    console.log(`\n**Failed:** ${failed.join('; ')} (see the error output above).`);
    process.exitCode = 1;
  }
}

function runScript(script: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(__dirname, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

function machineTable(): string {
  const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  return markdownTable(
    ['machine', ''],
    [
      ['CPUs (nproc)', `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown'}`],
      ['memory', `${gib(totalmem())} (${gib(freemem())} free at start)`],
      ['kernel', release()],
      ['node', process.version],
      ['bubblewrap', commandOutput('bwrap', ['--version'])],
      ['load average at start (1, 5, 15 min)', loadavg().map((load) => load.toFixed(2)).join(', ')],
    ],
    [false, false],
  );
}

function commandOutput(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8' }).trim();
  } catch {
    return 'not found';
  }
}

/** local-provider.bench prints `label  median X ms   p95 Y ms   (N runs)` lines. */
function providerTable(output: string): string {
  const line = /^(.+?)\s+median ([\d.]+) ms\s+p95 ([\d.]+) ms\s+\((\d+) runs\)$/;
  const rows = output.split('\n').map((text) => line.exec(text.trim())).filter((match): match is RegExpExecArray => match !== null);
  if (rows.length === 0) return output;
  return markdownTable(['measure (provider calls, in-process)', 'median ms', 'p95 ms', 'runs'], rows.map((match) => [match[1], match[2], match[3], match[4]]));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
