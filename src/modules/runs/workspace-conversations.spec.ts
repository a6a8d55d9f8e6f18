import { Logger } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DataSource } from 'typeorm';
import { AppConfig } from '../../config/app-config';
import { LocalVolumeAccess } from '../../integrations/sandbox/local/local-volume-access';
import { SandboxProvider, VolumeAccess } from '../../integrations/sandbox/sandbox-provider';
import { ProviderUnavailableError } from '../../integrations/sandbox/sandbox-provider.errors';
import { ObjectStore } from '../../integrations/storage/object-store';
import { modalVolumeOnLocalDisk } from '../../testing/local-modal-sandbox';
import { openTestDatabase } from '../../testing/pglite-database';
import { insertRunIn, insertSandbox, SandboxRow } from '../../testing/run-fixtures';
import { strictMock } from '../../testing/strict-mock';
import { SandboxActivity } from '../sandboxes/sandbox-activity';
import { Sandbox } from '../sandboxes/sandbox.entity';
import { SandboxesService } from '../sandboxes/sandboxes.service';
import { SecretsStore } from '../sandboxes/secrets.store';
import { SnapshotEngine } from '../snapshots/snapshot-engine';
import { SnapshotsService } from '../snapshots/snapshots.service';
import { Run } from './run.entity';
import { MAX_TRANSCRIPTS, WorkspaceConversations } from './workspace-conversations';

/** The fixtures' sandboxes work in /mnt/workspace/app: the CLI keeps their conversations here. */
const APP_FOLDER = '.claude-state/projects/-mnt-workspace-app';

/** Both engines' volume access on a real directory: the choice must not depend on the engine. */
const ENGINES: [string, (root: string, base: string) => VolumeAccess][] = [
  ['local', (root) => new LocalVolumeAccess(root)],
  ['modal', (root, base) => modalVolumeOnLocalDisk(root, base)],
];

describe.each(ENGINES)('WorkspaceConversations (real PGlite database, real volume through the %s engine’s access)', (_engine, volumeAt) => {
  let database: Awaited<ReturnType<typeof openTestDatabase>>;
  let dataSource: DataSource;
  let provider: jest.Mocked<SandboxProvider>;
  let conversations: WorkspaceConversations;
  let base: string;
  let root: string;
  let sandbox: SandboxRow;

  beforeAll(async () => {
    database = await openTestDatabase();
    dataSource = database.dataSource;
  });
  afterAll(() => database?.close());

  beforeEach(async () => {
    for (const level of ['log', 'warn'] as const) jest.spyOn(Logger.prototype, level).mockImplementation(() => undefined);
    const config = AppConfig.fromEnvironment({ DATA_DIR: '/tmp/workspace-conversations-spec' });
    base = await mkdtemp(join(tmpdir(), 'conversations-spec-'));
    root = join(base, 'volume');
    await mkdir(root);
    provider = strictMock<SandboxProvider>('provider', ['volume'], { kind: 'local' });
    provider.volume.mockReturnValue(volumeAt(root, base));
    const sandboxes = new SandboxesService(
      dataSource.getRepository(Sandbox),
      provider,
      new SecretsStore(config),
      new SnapshotsService(new SnapshotEngine(strictMock<ObjectStore>('objectStore', [])), config),
      config,
      new SandboxActivity(dataSource.getRepository(Sandbox)),
    );
    conversations = new WorkspaceConversations(dataSource.getRepository(Run), sandboxes);
    sandbox = await insertSandbox(dataSource, { volumeName: 'restored' });
  });
  afterEach(async () => {
    jest.restoreAllMocks();
    await rm(base, { recursive: true, force: true });
  });

  const stored = async (row: SandboxRow = sandbox, workdir?: string) => {
    const found = await dataSource.getRepository(Sandbox).findOneByOrFail({ id: row.sandboxId });
    if (workdir) found.config = { ...found.config, workdir };
    return found;
  };
  const toContinue = async (workdir?: string) => conversations.toContinue(await stored(sandbox, workdir));
  /** A transcript on the volume, modified at the given time (a restore gives every file the time it ran). */
  const transcript = async (path: string, modifiedAt = new Date(), content = '{"type":"user"}\n') => {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
    await utimes(join(root, path), modifiedAt, modifiedAt);
  };
  /** An ended run of the account elsewhere (another sandbox, another volume) that used the session. */
  const endedRun = async (sessionId: string, fields: Partial<Run> = {}, place: { volumeName?: string; accountId?: string } = {}) => {
    const elsewhere = await insertSandbox(dataSource, { volumeName: place.volumeName ?? 'original', accountId: place.accountId ?? sandbox.accountId, userId: place.accountId ? undefined : sandbox.userId });
    return insertRunIn(dataSource, elsewhere, { status: 'succeeded', sessionId, ...fields });
  };

  it('starts a new conversation on a volume with no Claude state', async () => {
    await endedRun(randomUUID(), {}, { volumeName: 'restored' });

    await expect(toContinue()).resolves.toBeNull();
    expect(provider.volume).toHaveBeenCalledWith(sandbox.accountId, 'restored', sandbox.providerSandboxId);
  });

  it('continues the conversation the volume holds, whatever volume its run was on', async () => {
    const sessionId = randomUUID();
    await endedRun(sessionId, {}, { volumeName: 'original' });
    await transcript(`${APP_FOLDER}/${sessionId}.jsonl`);

    await expect(toContinue()).resolves.toBe(sessionId);
  });

  it('of several conversations held, continues the one a run used last, whatever the files’ times', async () => {
    const [older, latest, unknown] = [randomUUID(), randomUUID(), randomUUID()];
    await endedRun(older);
    await endedRun(latest, { status: 'failed' });
    await transcript(`${APP_FOLDER}/${latest}.jsonl`, new Date('2020-01-01'));
    await transcript(`${APP_FOLDER}/${older}.jsonl`, new Date('2024-01-01'));
    await transcript(`${APP_FOLDER}/${unknown}.jsonl`, new Date('2025-01-01'));

    await expect(toContinue()).resolves.toBe(latest);
  });

  it.each(['cancelled', 'timed_out', 'interrupted'] as const)('continues a conversation whose run ended %s', async (status) => {
    const sessionId = randomUUID();
    await endedRun(sessionId, { status });
    await transcript(`${APP_FOLDER}/${sessionId}.jsonl`);

    await expect(toContinue()).resolves.toBe(sessionId);
  });

  it('never names a session whose transcript is not on the volume, even the volume’s own latest', async () => {
    const [held, gone] = [randomUUID(), randomUUID()];
    await endedRun(held, {}, { volumeName: 'restored' });
    await endedRun(gone, {}, { volumeName: 'restored' });
    await transcript(`${APP_FOLDER}/${held}.jsonl`);

    await expect(toContinue()).resolves.toBe(held);
    await rm(join(root, `${APP_FOLDER}/${held}.jsonl`));
    await expect(toContinue()).resolves.toBeNull();
  });

  it('does not continue transcripts no ended run of the account used: another account’s, an active run’s, or one made by hand', async () => {
    const [theirs, active, byHand] = [randomUUID(), randomUUID(), randomUUID()];
    const otherAccount = await insertSandbox(dataSource);
    await endedRun(theirs, {}, { accountId: otherAccount.accountId });
    await endedRun(active, { status: 'running' });
    for (const sessionId of [theirs, active, byHand]) await transcript(`${APP_FOLDER}/${sessionId}.jsonl`);

    await expect(toContinue()).resolves.toBeNull();
  });

  it('takes only plain, non-empty transcript files named by a session id; links, folders and other names are never resumed', async () => {
    const outside = join(base, 'outside');
    const ids = { linkOut: randomUUID(), linkIn: randomUUID(), empty: randomUUID(), folder: randomUUID(), upper: randomUUID() };
    for (const sessionId of Object.values(ids)) await endedRun(sessionId);
    await endedRun('--help');
    await mkdir(join(root, APP_FOLDER), { recursive: true });
    await mkdir(outside);
    await writeFile(join(outside, 'real.jsonl'), '{"type":"user"}\n');
    await symlink(join(outside, 'real.jsonl'), join(root, `${APP_FOLDER}/${ids.linkOut}.jsonl`));
    await transcript('elsewhere.jsonl');
    await symlink('../../../elsewhere.jsonl', join(root, `${APP_FOLDER}/${ids.linkIn}.jsonl`));
    await transcript(`${APP_FOLDER}/${ids.empty}.jsonl`, new Date(), '');
    await mkdir(join(root, `${APP_FOLDER}/${ids.folder}.jsonl`));
    await transcript(`${APP_FOLDER}/${ids.upper.toUpperCase()}.jsonl`);
    await transcript(`${APP_FOLDER}/--help.jsonl`);

    await expect(toContinue()).resolves.toBeNull();
  });

  it('starts a new conversation when the Claude state is a link out of the volume or a file where a folder belongs', async () => {
    const sessionId = randomUUID();
    await endedRun(sessionId);
    const outside = join(base, 'outside-state');
    await mkdir(join(outside, 'projects/-mnt-workspace-app'), { recursive: true });
    await writeFile(join(outside, `projects/-mnt-workspace-app/${sessionId}.jsonl`), '{"type":"user"}\n');
    await symlink(outside, join(root, '.claude-state'));

    await expect(toContinue()).resolves.toBeNull();
    expect(Logger.prototype.warn).toHaveBeenCalledWith(expect.objectContaining({ sandbox_id: sandbox.sandboxId, path: `${APP_FOLDER}` }), expect.stringContaining('unusable'));

    await rm(join(root, '.claude-state'));
    await transcript('.claude-state/projects');
    await expect(toContinue()).resolves.toBeNull();
  });

  it(`still finds the latest conversation among more than ${MAX_TRANSCRIPTS} transcripts, looking its file up by name`, async () => {
    const sessionId = randomUUID();
    await endedRun(sessionId);
    await transcript(`${APP_FOLDER}/${sessionId}.jsonl`, new Date('2020-01-01'));
    const later = new Date('2024-01-01');
    for (let index = 0; index < MAX_TRANSCRIPTS; index += 1) await transcript(`${APP_FOLDER}/${randomUUID()}.jsonl`, later);

    await expect(toContinue()).resolves.toBe(sessionId);
  });

  describe('a sandbox working in another folder of the volume', () => {
    it('continues the latest conversation of the volume’s other folders when its own has none', async () => {
      const [older, latest] = [randomUUID(), randomUUID()];
      await endedRun(older);
      await endedRun(latest);
      await transcript(`${APP_FOLDER}/${older}.jsonl`);
      await transcript(`${APP_FOLDER}/${latest}.jsonl`);

      await expect(toContinue('/mnt/workspace/docs')).resolves.toBe(latest);
    });

    it('prefers a conversation of its own folder, even an older one', async () => {
      const [own, latest] = [randomUUID(), randomUUID()];
      const docs = await insertSandbox(dataSource, { accountId: sandbox.accountId, userId: sandbox.userId });
      await dataSource.query(`UPDATE sandbox SET config = jsonb_set(config, '{workdir}', '"/mnt/workspace/docs"') WHERE id = $1`, [docs.sandboxId]);
      await insertRunIn(dataSource, docs, { status: 'succeeded', sessionId: own });
      await endedRun(latest);
      await transcript(`.claude-state/projects/-mnt-workspace-docs/${own}.jsonl`);
      await transcript(`${APP_FOLDER}/${latest}.jsonl`);

      await expect(toContinue('/mnt/workspace/docs')).resolves.toBe(own);
    });

    it('skips conversations whose transcript is gone or not a plain file', async () => {
      const [held, linked, gone] = [randomUUID(), randomUUID(), randomUUID()];
      await endedRun(held);
      await endedRun(linked);
      await endedRun(gone);
      await transcript(`${APP_FOLDER}/${held}.jsonl`);
      await transcript('elsewhere.jsonl');
      await symlink('../../../elsewhere.jsonl', join(root, `${APP_FOLDER}/${linked}.jsonl`));

      await expect(toContinue('/')).resolves.toBe(held);
    });

    it('finds nothing for a working directory whose folder name the CLI would shorten with a hash', async () => {
      const sessionId = randomUUID();
      await endedRun(sessionId);
      const deep = `/mnt/${'d'.repeat(250)}`;
      await transcript(`.claude-state/projects/${deep.replace(/[^a-zA-Z0-9]/g, '-')}/${sessionId}.jsonl`);

      await expect(toContinue(deep)).resolves.toBeNull();
    });
  });

  it('fails when the engine cannot read the volume, rather than guessing', async () => {
    const failing = strictMock<VolumeAccess>('volume', ['list', 'stat']);
    failing.list.mockRejectedValue(new ProviderUnavailableError('filesystem', 'Modal is unreachable'));
    provider.volume.mockReturnValue(failing);

    await expect(toContinue()).rejects.toThrow(ProviderUnavailableError);
  });
});
