import { Logger } from '@nestjs/common';
import { AppConfig } from '../../config/app-config';
import { AdminBootstrapService } from './admin-bootstrap.service';
import { User } from './user.entity';
import { UsersService } from './users.service';
import { strictMock } from '../../testing/strict-mock';


const ADMIN = { ADMIN_EMAIL: 'admin@example.com', ADMIN_PASSWORD: 'bootstrap-secret' };

describe('AdminBootstrapService', () => {
  let users: jest.Mocked<UsersService>;
  let warnings: jest.SpyInstance;
  let logs: jest.SpyInstance;
  /** Users the fake store holds. */
  let stored: User[];

  function bootstrap(env: Record<string, string>): Promise<void> {
    return new AdminBootstrapService(AppConfig.fromEnvironment({ DATA_DIR: '/tmp/admin-bootstrap-spec', ...env }), users).onApplicationBootstrap();
  }

  beforeEach(() => {
    warnings = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    logs = jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    stored = [];
    users = strictMock<UsersService>('users', ['count', 'create']);
    users.count.mockImplementation(async () => stored.length);
  });
  afterEach(() => jest.restoreAllMocks());

  it('creates the admin from ADMIN_EMAIL and ADMIN_PASSWORD when no user exists', async () => {
    users.create.mockImplementation(async (input) => {
      const user = { id: 'u-1', accountId: 'acc-1', email: input.email, role: input.role } as User;
      stored.push(user);
      return user;
    });

    await bootstrap(ADMIN);

    expect(users.create).toHaveBeenCalledWith({ email: 'admin@example.com', password: 'bootstrap-secret', role: 'admin' });
    expect(JSON.stringify(logs.mock.calls)).not.toContain('bootstrap-secret');
  });

  it('creates the admin only once across restarts', async () => {
    users.create.mockImplementation(async (input) => {
      const user = { id: `u-${stored.length + 1}`, accountId: 'acc-1', email: input.email, role: input.role } as User;
      stored.push(user);
      return user;
    });

    await bootstrap(ADMIN);
    await bootstrap(ADMIN);

    expect(users.create).toHaveBeenCalledTimes(1);
    expect(stored).toHaveLength(1);
  });

  it('leaves an existing installation alone, silently', async () => {
    stored.push({ id: 'u-1' } as User);

    await bootstrap(ADMIN);

    expect(users.create).not.toHaveBeenCalled();
    expect(warnings).not.toHaveBeenCalled();
  });

  it.each([
    ['neither variable', {}],
    ['only ADMIN_EMAIL', { ADMIN_EMAIL: 'admin@example.com' }],
    ['only ADMIN_PASSWORD', { ADMIN_PASSWORD: 'bootstrap-secret' }],
  ])('with no user and %s, explains how to create the first admin', async (_case, env) => {
    await bootstrap(env);

    expect(users.create).not.toHaveBeenCalled();
    expect(warnings).toHaveBeenCalledWith(expect.stringMatching(/ADMIN_EMAIL.*ADMIN_PASSWORD/));
    expect(JSON.stringify(warnings.mock.calls)).not.toContain('bootstrap-secret');
  });
});
