import { DataSource } from 'typeorm';
import { Run, RunOptions } from '../modules/runs/run.entity';
import { AppConfig } from '../config/app-config';
import { RunEventFeed } from '../modules/runs/run-event-feed';

export interface SandboxRow {
  accountId: string;
  userId: string;
  sandboxId: string;
  providerSandboxId: string;
}

/** An account with a member and a running sandbox on the given volume and engine (a new account unless given). */
export async function insertSandbox(dataSource: DataSource, place: { volumeName?: string; provider?: string; accountId?: string; userId?: string } = {}): Promise<SandboxRow> {
  const accountId = place.accountId ?? (await dataSource.query(`INSERT INTO account (name) VALUES ('spec') RETURNING id`))[0].id;
  const userId =
    place.userId ??
    (await dataSource.query(`INSERT INTO "user" (email, password_hash, role, account_id) VALUES (gen_random_uuid() || '@example.test', 'x', 'member', $1) RETURNING id`, [accountId]))[0].id;
  const providerSandboxId = `prov-${Math.random().toString(36).slice(2)}`;
  const config = { volume_name: place.volumeName ?? 'default', volume_mount_path: '/mnt/workspace', workdir: '/mnt/workspace/app' };
  const [sandbox] = await dataSource.query(
    `INSERT INTO sandbox (account_id, created_by, provider, provider_sandbox_id, status, config, last_activity_at) VALUES ($1, $2, $3, $4, 'running', $5, now()) RETURNING id`,
    [accountId, userId, place.provider ?? 'local', providerSandboxId, JSON.stringify(config)],
  );
  return { accountId, userId, sandboxId: sandbox.id, providerSandboxId };
}

export const RUN_OPTIONS: RunOptions = {
  resume: true,
  model: null,
  max_turns: null,
  allowed_tools: [],
  disallowed_tools: [],
  append_system_prompt: null,
  include_partial_messages: false,
  timeout_seconds: 3600,
  resumed_session_id: null,
};

/** A stored run in the sandbox, queued unless the fields say otherwise. */
export function insertRunIn(dataSource: DataSource, sandbox: SandboxRow, fields: Partial<Run> = {}): Promise<Run> {
  const runs = dataSource.getRepository(Run);
  return runs.save(
    runs.create({ sandboxId: sandbox.sandboxId, accountId: sandbox.accountId, createdBy: sandbox.userId, prompt: 'fix the tests', status: 'queued', options: RUN_OPTIONS, ...fields }),
  );
}

/** The event feed of a single instance on PGlite: signals from this process only. */
export function singleInstanceFeed(dataSource: DataSource): RunEventFeed {
  return new RunEventFeed(dataSource, AppConfig.fromEnvironment({ DATA_DIR: '/tmp/run-event-feed-spec' }));
}
