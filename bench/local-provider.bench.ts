/**
 * Provider-level latency of the local engine: create → first output of an exec → terminate, beside
 * a raw `bwrap … true`. Run after `npm run build`: node dist/bench/local-provider.bench.js [runs]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Logger } from '@nestjs/common';
import { AppConfig } from '../src/config/app-config';
import { LocalSandboxProvider } from '../src/integrations/sandbox/local/local-sandbox.provider';
import type { SandboxSpec } from '../src/integrations/sandbox/sandbox-provider';

const WARM_UP_RUNS = 5;

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 50);
  const dataDir = mkdtempSync(join(tmpdir(), 'local-provider-bench-'));
  Logger.overrideLogger(false);
  const config = AppConfig.fromEnvironment({ DATA_DIR: dataDir });
  const provider = new LocalSandboxProvider(config);
  provider.assertReady();
  try {
    const create: number[] = [];
    const firstOutput: number[] = [];
    const terminate: number[] = [];
    for (let run = 0; run < WARM_UP_RUNS + runs; run++) {
      const spec: SandboxSpec = {
        sandboxId: `bench${run}`,
        accountId: 'bench',
        dockerfileCommands: [],
        volumeName: 'work',
        volumeMountPath: '/workspace',
        workdir: '/workspace',
        env: {},
        secrets: [],
        network: { mode: 'internet', cidrAllowlist: [], allowedDomains: [] },
        timeoutSeconds: 60,
      };
      const started = performance.now();
      const { providerSandboxId } = await provider.create(spec);
      const created = performance.now();
      const command = await provider.exec(providerSandboxId, { argv: ['echo', 'ok'] });
      await new Promise((resolve) => command.stdout.once('data', resolve));
      const answered = performance.now();
      await command.wait();
      await provider.terminate(providerSandboxId);
      const ended = performance.now();
      if (run < WARM_UP_RUNS) continue;
      create.push(created - started);
      firstOutput.push(answered - started);
      terminate.push(ended - answered);
    }
    const rawBwrap: number[] = [];
    for (let run = 0; run < runs; run++) {
      const started = performance.now();
      await runToExit(config.sandbox.bwrapBin, ['--unshare-user', '--unshare-pid', '--ro-bind', '/', '/', 'true']);
      rawBwrap.push(performance.now() - started);
    }
    report('create', create);
    report('create → first exec output', firstOutput);
    report('terminate', terminate);
    report('raw bwrap … true', rawBwrap);
  } finally {
    await provider.onApplicationShutdown();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function runToExit(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', () => resolve());
  });
}

function report(label: string, samples: number[]): void {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (quantile: number) => sorted[Math.min(sorted.length - 1, Math.floor(quantile * sorted.length))].toFixed(1);
  console.log(`${label.padEnd(30)} median ${at(0.5)} ms   p95 ${at(0.95)} ms   (${samples.length} runs)`);
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
