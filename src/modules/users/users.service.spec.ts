import { Logger } from '@nestjs/common';
import { DataSource, EntityManager, QueryFailedError, Repository } from 'typeorm';
import { PasswordHasher } from './password-hasher';
import { Account } from './account.entity';
import { User } from './user.entity';
import { EmailTakenError, UnknownAccountError } from './users.errors';
import { normalizeEmail, UsersService } from './users.service';
import { strictMock } from '../../testing/strict-mock';


const EXISTING_ACCOUNT = '0b6c3f5e-1d2a-4c1e-9f00-000000000001';

describe('UsersService', () => {
  let users: jest.Mocked<Repository<User>>;
  let accounts: jest.Mocked<Repository<Account>>;
  let dataSource: jest.Mocked<DataSource>;
  let manager: jest.Mocked<EntityManager>;
  let hasher: jest.Mocked<PasswordHasher>;
  let service: UsersService;
  /** What the transaction wrote, in order. */
  let written: Array<Account | User>;

  beforeEach(() => {
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    users = strictMock<Repository<User>>('users', ['existsBy', 'findOneBy', 'find', 'count']);
    accounts = strictMock<Repository<Account>>('accounts', ['existsBy']);
    dataSource = strictMock<DataSource>('dataSource', ['transaction']);
    manager = strictMock<EntityManager>('manager', ['create', 'save']);
    hasher = strictMock<PasswordHasher>('hasher', ['hash']);
    service = new UsersService(users, accounts, dataSource, hasher);

    written = [];
    dataSource.transaction.mockImplementation(((work: (manager: EntityManager) => Promise<unknown>) => work(manager)) as never);
    manager.create.mockImplementation(((entity: typeof User | typeof Account, fields: object) => Object.assign(new entity(), fields)) as never);
    manager.save.mockImplementation((async (record: User | Account) => {
      const saved = Object.assign(record, { id: `id-${written.length + 1}`, createdAt: new Date() });
      written.push(saved);
      return saved;
    }) as never);
    hasher.hash.mockImplementation(async (password) => `hashed(${password.length})`);
    // The store holds one user, dev@example.com, and one account.
    users.existsBy.mockImplementation(async (where) => (where as { email: string }).email === 'dev@example.com');
    accounts.existsBy.mockImplementation(async (where) => (where as { id: string }).id === EXISTING_ACCOUNT);
  });
  afterEach(() => jest.restoreAllMocks());

  describe('create', () => {
    it('creates a member with an account of their own, storing only the password hash', async () => {
      const user = await service.create({ email: 'new@example.com', password: 'long enough' });

      expect(user).toMatchObject({ email: 'new@example.com', role: 'member', passwordHash: 'hashed(11)' });
      expect(written).toEqual([expect.any(Account), user]);
      expect(user.accountId).toBe(written[0].id);
      expect(JSON.stringify(written)).not.toContain('long enough');
    });

    it('stores the email trimmed and lower-cased', async () => {
      const user = await service.create({ email: '  New.Person@Example.COM ', password: 'long enough' });

      expect(user.email).toBe('new.person@example.com');
    });

    it('refuses an email already in use, whatever its case', async () => {
      await expect(service.create({ email: 'DEV@example.com ', password: 'long enough' })).rejects.toThrow(EmailTakenError);
      expect(written).toEqual([]);
    });

    it('refuses an email taken by a concurrent creation as EmailTakenError', async () => {
      const driverError = Object.assign(new Error('duplicate key value violates unique constraint "uq_user_email"'), { code: '23505' });
      const duplicate = new QueryFailedError('INSERT INTO "user"', [], driverError);
      dataSource.transaction.mockRejectedValueOnce(duplicate);

      await expect(service.create({ email: 'racer@example.com', password: 'long enough' })).rejects.toThrow(EmailTakenError);
    });

    it('adds the user to an existing account without creating another', async () => {
      const user = await service.create({ email: 'admin2@example.com', password: 'long enough', role: 'admin', accountId: EXISTING_ACCOUNT });

      expect(user).toMatchObject({ accountId: EXISTING_ACCOUNT, role: 'admin' });
      expect(written).toEqual([user]);
    });

    it('refuses an account id that names no account', async () => {
      await expect(service.create({ email: 'new@example.com', password: 'long enough', accountId: '0b6c3f5e-1d2a-4c1e-9f00-00000000dead' })).rejects.toThrow(
        UnknownAccountError,
      );
      expect(written).toEqual([]);
    });
  });

  it('finds a user by email regardless of case and surrounding spaces', async () => {
    const stored = { id: 'u-1', email: 'dev@example.com' } as User;
    users.findOneBy.mockImplementation(async (where) => ((where as { email: string }).email === 'dev@example.com' ? stored : null));

    await expect(service.findByEmail(' Dev@Example.com')).resolves.toBe(stored);
  });

  it('normalizes emails by trimming and lower-casing', () => {
    expect(normalizeEmail('\tA.B@C.Example \n')).toBe('a.b@c.example');
  });
});
