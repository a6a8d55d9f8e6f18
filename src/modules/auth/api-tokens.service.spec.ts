import { Logger } from '@nestjs/common';
import { DeleteResult, Repository } from 'typeorm';
import { ApiToken } from './api-token.entity';
import { API_TOKEN_MARKER, ApiTokensService, hashApiToken } from './api-tokens.service';
import { ApiTokenNotFoundError } from './auth.errors';
import { strictMock } from '../../testing/strict-mock';


const NOW = new Date('2030-01-15T12:00:00Z');
const TOKEN = API_TOKEN_MARKER + 'b'.repeat(43);

function storedToken(overrides: Partial<ApiToken> = {}): ApiToken {
  return { id: 't-1', userId: 'u-1', name: 'ci', prefix: TOKEN.slice(0, 12), tokenHash: hashApiToken(TOKEN), createdAt: new Date(0), lastUsedAt: null, expiresAt: null, ...overrides };
}

describe('ApiTokensService', () => {
  let rows: jest.Mocked<Repository<ApiToken>>;
  let tokens: ApiTokensService;

  beforeEach(() => {
    jest.useFakeTimers({ now: NOW });
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    rows = strictMock<Repository<ApiToken>>('apiTokens', ['create', 'save', 'find', 'findOneBy', 'update', 'delete']);
    tokens = new ApiTokensService(rows);
  });
  afterEach(() => {
    jest.useRealTimers();
    jest.restoreAllMocks();
  });

  describe('issue', () => {
    beforeEach(() => {
      rows.create.mockImplementation((fields) => ({ ...fields }) as ApiToken);
      rows.save.mockImplementation(async (record) => ({ ...record, id: 't-new', createdAt: NOW }) as never);
    });

    it('returns a fresh marked token and stores only its hash and a short prefix', async () => {
      const first = await tokens.issue('u-1', 'ci');
      const second = await tokens.issue('u-1', 'ci');

      expect(first.token).toMatch(/^mss_[A-Za-z0-9_-]{43}$/);
      expect(second.token).not.toBe(first.token);
      expect(first.record).toMatchObject({ userId: 'u-1', name: 'ci', tokenHash: hashApiToken(first.token), prefix: first.token.slice(0, 12), expiresAt: null });
      expect(JSON.stringify(rows.save.mock.calls)).not.toContain(first.token);
    });

    it('sets the expiry the given number of days ahead', async () => {
      const { record } = await tokens.issue('u-1', 'short-lived', 30);

      expect(record.expiresAt).toEqual(new Date(NOW.getTime() + 30 * 86_400_000));
    });
  });

  describe('findUsable', () => {
    it('finds a token by the hash of its value', async () => {
      rows.findOneBy.mockResolvedValueOnce(storedToken({ lastUsedAt: NOW }));

      await expect(tokens.findUsable(TOKEN)).resolves.toMatchObject({ id: 't-1', userId: 'u-1' });
      expect(rows.findOneBy).toHaveBeenCalledWith({ tokenHash: hashApiToken(TOKEN) });
    });

    it('refuses a token whose expiry has passed', async () => {
      rows.findOneBy.mockResolvedValueOnce(storedToken({ expiresAt: new Date(NOW.getTime() - 1) }));

      await expect(tokens.findUsable(TOKEN)).resolves.toBeNull();
    });

    it('accepts a token until its expiry', async () => {
      rows.findOneBy.mockResolvedValueOnce(storedToken({ expiresAt: new Date(NOW.getTime() + 1000), lastUsedAt: NOW }));

      await expect(tokens.findUsable(TOKEN)).resolves.not.toBeNull();
    });

    it('records the first use', async () => {
      rows.findOneBy.mockResolvedValueOnce(storedToken({ lastUsedAt: null }));
      rows.update.mockResolvedValueOnce({ affected: 1 } as never);

      await tokens.findUsable(TOKEN);

      expect(rows.update).toHaveBeenCalledWith({ id: 't-1' }, { lastUsedAt: NOW });
    });

    it('does not write the use again within a minute', async () => {
      rows.findOneBy.mockResolvedValueOnce(storedToken({ lastUsedAt: new Date(NOW.getTime() - 59_000) }));

      await expect(tokens.findUsable(TOKEN)).resolves.not.toBeNull();
      expect(rows.update).not.toHaveBeenCalled();
    });

    it('writes the use again once more than a minute has passed', async () => {
      rows.findOneBy.mockResolvedValueOnce(storedToken({ lastUsedAt: new Date(NOW.getTime() - 61_000) }));
      rows.update.mockResolvedValueOnce({ affected: 1 } as never);

      const record = await tokens.findUsable(TOKEN);

      expect(record?.lastUsedAt).toEqual(NOW);
      expect(rows.update).toHaveBeenCalledWith({ id: 't-1' }, { lastUsedAt: NOW });
    });
  });

  describe('revoke', () => {
    beforeEach(() => {
      // One token, t-1, owned by u-1: a delete matches only when both id and owner match.
      rows.delete.mockImplementation(async (criteria) => {
        const { id, userId } = criteria as { id: string; userId: string };
        return { raw: [], affected: id === 't-1' && userId === 'u-1' ? 1 : 0 } satisfies DeleteResult;
      });
    });

    it("revokes the caller's own token", async () => {
      await expect(tokens.revoke('u-1', 't-1')).resolves.toBeUndefined();
    });

    it("answers another user's token as not found", async () => {
      await expect(tokens.revoke('u-2', 't-1')).rejects.toThrow(ApiTokenNotFoundError);
    });

    it('answers an unknown token as not found', async () => {
      await expect(tokens.revoke('u-1', 't-unknown')).rejects.toThrow(ApiTokenNotFoundError);
    });
  });

  it("lists the user's tokens newest first", async () => {
    rows.find.mockResolvedValueOnce([storedToken()]);

    await expect(tokens.listForUser('u-1')).resolves.toHaveLength(1);
    expect(rows.find).toHaveBeenCalledWith({ where: { userId: 'u-1' }, order: { createdAt: 'DESC' } });
  });
});
