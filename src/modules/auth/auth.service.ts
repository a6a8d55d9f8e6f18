import { Injectable } from '@nestjs/common';
import { JwtService } from '@nestjs/jwt';
import { AppConfig } from '../../config/app-config';
import { User } from '../users/user.entity';
import { UsersService } from '../users/users.service';
import { API_TOKEN_MARKER, ApiTokensService } from './api-tokens.service';
import { InvalidBearerTokenError, InvalidCredentialsError } from './auth.errors';
import { AuthenticatedUser } from './authenticated-user';
import { PasswordHasher } from '../users/password-hasher';

interface JwtClaims {
  sub: string;
}

@Injectable()
export class AuthService {
  constructor(
    private readonly config: AppConfig,
    private readonly users: UsersService,
    private readonly hasher: PasswordHasher,
    private readonly jwt: JwtService,
    private readonly apiTokens: ApiTokensService,
  ) {}

  async login(email: string, password: string): Promise<{ accessToken: string; expiresIn: number }> {
    const user = await this.users.findByEmail(email);
    const valid = user ? await this.hasher.verify(password, user.passwordHash) : await this.hasher.verifyAgainstNothing(password);
    if (!user || !valid) throw new InvalidCredentialsError();
    const expiresIn = this.config.auth.jwtExpiresInSeconds;
    const accessToken = await this.jwt.signAsync({ sub: user.id } satisfies JwtClaims, { expiresIn });
    return { accessToken, expiresIn };
  }

  /** Resolves a bearer credential, JWT or API token, to the user it stands for. */
  async authenticate(bearer: string): Promise<AuthenticatedUser> {
    const viaApiToken = bearer.startsWith(API_TOKEN_MARKER);
    const userId = viaApiToken ? (await this.apiTokens.findUsable(bearer))?.userId : await this.verifyJwt(bearer);
    const user = userId ? await this.users.findById(userId) : null;
    if (!user) throw new InvalidBearerTokenError();
    return toAuthenticatedUser(user, viaApiToken ? 'api_token' : 'jwt');
  }

  private async verifyJwt(token: string): Promise<string | undefined> {
    try {
      return (await this.jwt.verifyAsync<JwtClaims>(token)).sub;
    } catch {
      return undefined;
    }
  }
}

function toAuthenticatedUser(user: User, via: AuthenticatedUser['via']): AuthenticatedUser {
  return { id: user.id, email: user.email, role: user.role, accountId: user.accountId, via };
}
