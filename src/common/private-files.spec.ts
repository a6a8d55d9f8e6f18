import type { LoggerService } from '@nestjs/common';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensurePrivateDataDir, restrictToOwner } from './private-files';

describe('private files', () => {
  let root: string;
  let logger: { warn: jest.Mock; log: jest.Mock; error: jest.Mock };

  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'mss-private-files-'));
    logger = { warn: jest.fn(), log: jest.fn(), error: jest.fn() };
  });

  afterEach(() => rmSync(root, { recursive: true, force: true }));

  const modeOf = (path: string) => statSync(path).mode & 0o7777;
  const ensure = (dir: string) => ensurePrivateDataDir(dir, logger as LoggerService);

  it('creates a missing DATA_DIR, and its missing parents, owner-only without logging', () => {
    const dataDir = join(root, 'parent', 'data');

    ensure(dataDir);

    expect(modeOf(dataDir)).toBe(0o700);
    expect(logger.warn).not.toHaveBeenCalled();
  });

  it('restricts an existing DATA_DIR open to group and other, saying so in one structured line', () => {
    const dataDir = join(root, 'data');
    mkdirSync(dataDir);
    chmodSync(dataDir, 0o755);

    ensure(dataDir);

    expect(modeOf(dataDir)).toBe(0o700);
    expect(logger.warn).toHaveBeenCalledTimes(1);
    expect(logger.warn).toHaveBeenCalledWith({ path: dataDir, previous_mode: '0755', mode: '0700' }, expect.stringContaining('DATA_DIR'));
  });

  it('leaves an owner-only DATA_DIR as it is, silently', () => {
    const dataDir = join(root, 'data');
    mkdirSync(dataDir, { mode: 0o700 });

    ensure(dataDir);

    expect(modeOf(dataDir)).toBe(0o700);
    expect(logger.warn).not.toHaveBeenCalled();
  });

  it('restricts what PGlite and the JWT secret left open: files to 0600, directories to 0700', () => {
    const dataDir = join(root, 'data');
    mkdirSync(join(dataDir, 'pglite', 'base', '5'), { recursive: true });
    chmodSync(dataDir, 0o700);
    for (const dir of ['pglite', 'pglite/base', 'pglite/base/5']) chmodSync(join(dataDir, dir), 0o755);
    writeLooseFile(join(dataDir, 'pglite', 'PG_VERSION'), 0o666);
    writeLooseFile(join(dataDir, 'pglite', 'base', '5', '1259'), 0o666);
    writeLooseFile(join(dataDir, 'pglite', 'base', '5', 'pg_internal.init'), 0o644);
    writeLooseFile(join(dataDir, 'jwt-secret'), 0o644);

    ensure(dataDir);

    for (const dir of ['pglite', 'pglite/base', 'pglite/base/5']) expect(modeOf(join(dataDir, dir))).toBe(0o700);
    for (const file of ['pglite/PG_VERSION', 'pglite/base/5/1259', 'pglite/base/5/pg_internal.init', 'jwt-secret']) expect(modeOf(join(dataDir, file))).toBe(0o600);
    expect(logger.warn).toHaveBeenCalledTimes(1);
    expect(logger.warn).toHaveBeenCalledWith(expect.objectContaining({ entries_changed: 7 }), expect.any(String));
  });

  it('leaves the sandbox engine’s subtrees alone', () => {
    const dataDir = join(root, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    for (const engineDir of ['volumes', 'sandboxes', 'rootfs', 'image-cache']) {
      mkdirSync(join(dataDir, engineDir, 'inner'), { recursive: true });
      chmodSync(join(dataDir, engineDir), 0o755);
      writeLooseFile(join(dataDir, engineDir, 'inner', 'file'), 0o644);
    }

    ensure(dataDir);

    for (const engineDir of ['volumes', 'sandboxes', 'rootfs', 'image-cache']) {
      expect(modeOf(join(dataDir, engineDir))).toBe(0o755);
      expect(modeOf(join(dataDir, engineDir, 'inner', 'file'))).toBe(0o644);
    }
    expect(logger.warn).not.toHaveBeenCalled();
  });

  it('does not follow symbolic links out of the tree it restricts', () => {
    const outside = join(root, 'outside');
    writeLooseFile(outside, 0o644);
    mkdirSync(join(root, 'pglite'), { mode: 0o700 });
    symlinkSync(outside, join(root, 'pglite', 'link'));

    expect(restrictToOwner(join(root, 'pglite'))).toBe(0);
    expect(modeOf(outside)).toBe(0o644);
  });

  it('counts nothing for a path that does not exist', () => {
    expect(restrictToOwner(join(root, 'missing'))).toBe(0);
  });
});

/** Written then chmod'ed, so the mode does not depend on the test process's umask. */
function writeLooseFile(path: string, mode: number): void {
  writeFileSync(path, 'content');
  chmodSync(path, mode);
}
