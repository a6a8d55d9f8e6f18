import { Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import type { Request } from 'express';
import { Strategy } from 'passport-custom';
import { InvalidBearerTokenError } from './auth.errors';
import { AuthService } from './auth.service';
import { AuthenticatedUser } from './authenticated-user';

export const BEARER_STRATEGY = 'bearer';

/** `Authorization: Bearer <JWT or API token>`; never a query parameter, which would end up in access logs. */
@Injectable()
export class BearerStrategy extends PassportStrategy(Strategy, BEARER_STRATEGY) {
  constructor(private readonly auth: AuthService) {
    super();
  }

  async validate(request: Request): Promise<AuthenticatedUser> {
    const token = extractBearer(request);
    if (!token) throw new InvalidBearerTokenError();
    return this.auth.authenticate(token);
  }
}

function extractBearer(request: Request): string | undefined {
  const header = request.headers.authorization;
  const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return match?.[1];
}
