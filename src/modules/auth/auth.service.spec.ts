import { Logger } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { Repository } from 'typeorm';
import { AppConfig } from '../../config/app-config';
import { User } from '../users/user.entity';
import { UsersService } from '../users/users.service';
import { ApiToken } from './api-token.entity';
import { ApiTokensService, hashApiToken } from './api-tokens.service';
import { InvalidBearerTokenError, InvalidCredentialsError } from './auth.errors';
import { AuthService } from './auth.service';
import { PasswordHasher } from '../users/password-hasher';
import { strictMock } from '../../testing/strict-mock';


const API_TOKEN = 'mss_' + 'a'.repeat(43);
const user = { id: 'u-1', email: 'dev@example.com', passwordHash: 'scrypt$stored', role: 'member', accountId: 'acc-1' } as User;

describe('AuthService', () => {
  let users: jest.Mocked<UsersService>;
  let hasher: jest.Mocked<PasswordHasher>;
  let jwt: jest.Mocked<JwtService>;
  let tokenRows: jest.Mocked<Repository<ApiToken>>;
  let auth: AuthService;

  beforeEach(() => {
    jest.spyOn(Logger.prototype, 'log').mockImplementation(() => undefined);
    users = strictMock<UsersService>('users', ['findByEmail', 'findById']);
    hasher = strictMock<PasswordHasher>('hasher', ['verify', 'verifyAgainstNothing']);
    jwt = strictMock<JwtService>('jwt', ['signAsync', 'verifyAsync']);
    tokenRows = strictMock<Repository<ApiToken>>('apiTokens', ['findOneBy', 'update']);
    const config = AppConfig.fromEnvironment({ DATA_DIR: '/tmp/auth-service-spec', JWT_EXPIRES_IN_SECONDS: '900' });
    auth = new AuthService(config, users, hasher, jwt, new ApiTokensService(tokenRows));
  });
  afterEach(() => jest.restoreAllMocks());

  describe('login', () => {
    it('signs a JWT for the user that expires as configured', async () => {
      users.findByEmail.mockResolvedValueOnce(user);
      hasher.verify.mockResolvedValueOnce(true);
      jwt.signAsync.mockResolvedValueOnce('signed.jwt' as never);

      await expect(auth.login('dev@example.com', 'correct horse')).resolves.toEqual({ accessToken: 'signed.jwt', expiresIn: 900 });
      expect(hasher.verify).toHaveBeenCalledWith('correct horse', user.passwordHash);
      expect(jwt.signAsync).toHaveBeenCalledWith({ sub: 'u-1' }, { expiresIn: 900 });
    });

    it('refuses a wrong password without signing anything', async () => {
      users.findByEmail.mockResolvedValueOnce(user);
      hasher.verify.mockResolvedValueOnce(false);

      await expect(auth.login('dev@example.com', 'wrong')).rejects.toThrow(InvalidCredentialsError);
      expect(jwt.signAsync).not.toHaveBeenCalled();
    });

    it('refuses an unknown email the same way, after spending a hash so timing does not tell', async () => {
      users.findByEmail.mockResolvedValueOnce(null);
      hasher.verifyAgainstNothing.mockResolvedValueOnce(false);

      const refusal = auth.login('nobody@example.com', 'whatever');

      await expect(refusal).rejects.toThrow(InvalidCredentialsError);
      await expect(refusal).rejects.toThrow('Invalid email or password');
      expect(hasher.verifyAgainstNothing).toHaveBeenCalledWith('whatever');
    });
  });

  describe('authenticate', () => {
    function storedToken(overrides: Partial<ApiToken>): ApiToken {
      return { id: 't-1', userId: 'u-1', name: 'ci', prefix: API_TOKEN.slice(0, 12), tokenHash: hashApiToken(API_TOKEN), createdAt: new Date(0), lastUsedAt: new Date(), expiresAt: null, ...overrides };
    }

    it('resolves a JWT to its user', async () => {
      jwt.verifyAsync.mockResolvedValueOnce({ sub: 'u-1' });
      users.findById.mockResolvedValueOnce(user);

      await expect(auth.authenticate('header.payload.signature')).resolves.toEqual({ id: 'u-1', email: 'dev@example.com', role: 'member', accountId: 'acc-1', via: 'jwt' });
    });

    it('refuses a JWT that does not verify', async () => {
      jwt.verifyAsync.mockRejectedValueOnce(new Error('jwt expired'));

      await expect(auth.authenticate('header.payload.signature')).rejects.toThrow(InvalidBearerTokenError);
    });

    it('refuses a valid JWT of a user that no longer exists', async () => {
      jwt.verifyAsync.mockResolvedValueOnce({ sub: 'u-gone' });
      users.findById.mockResolvedValueOnce(null);

      await expect(auth.authenticate('header.payload.signature')).rejects.toThrow(InvalidBearerTokenError);
    });

    it('resolves a live API token to its user without treating it as a JWT', async () => {
      tokenRows.findOneBy.mockResolvedValueOnce(storedToken({}));
      users.findById.mockResolvedValueOnce(user);

      await expect(auth.authenticate(API_TOKEN)).resolves.toMatchObject({ id: 'u-1', via: 'api_token' });
      expect(tokenRows.findOneBy).toHaveBeenCalledWith({ tokenHash: hashApiToken(API_TOKEN) });
    });

    it('refuses an expired API token', async () => {
      tokenRows.findOneBy.mockResolvedValueOnce(storedToken({ expiresAt: new Date(Date.now() - 1000) }));

      await expect(auth.authenticate(API_TOKEN)).rejects.toThrow(InvalidBearerTokenError);
    });

    it('refuses an unknown or revoked API token', async () => {
      tokenRows.findOneBy.mockResolvedValueOnce(null);

      await expect(auth.authenticate(API_TOKEN)).rejects.toThrow(InvalidBearerTokenError);
    });
  });
});
