import { readFileSync } from 'node:fs';
import { Client } from 'pg';

const CLOCK_TICKS = 100;

/**
 * CPU time (user + system, seconds) used so far by each PostgreSQL backend connected to the
 * database of `databaseUrl`, by pid: the server runs on this host, so /proc has its processes.
 * Backends that exited are not in it; a difference of two readings is a lower bound.
 */
export async function postgresBackendsCpu(databaseUrl: string): Promise<Map<number, number>> {
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
    const cpu = new Map<number, number>();
    for (const { pid } of rows) {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        cpu.set(pid, (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS);
      } catch {
        // exited meanwhile
      }
    }
    return cpu;
  } finally {
    await client.end();
  }
}

/** CPU seconds the backends used between two readings (a backend new in `after` counts from 0). */
export function cpuBetween(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, seconds] of after) total += seconds - (before.get(pid) ?? 0);
  return total;
}
