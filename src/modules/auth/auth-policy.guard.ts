import { CanActivate, ExecutionContext, Injectable, Logger } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthGuard } from '@nestjs/passport';
import { ForbiddenError } from '../../common/domain-error';
import { AUTH_POLICY, AuthPolicy } from '../../common/auth-policy.decorator';
import { AuthenticatedUser } from './authenticated-user';
import { BEARER_STRATEGY } from './bearer.strategy';

export class RouteWithoutAuthPolicyError extends ForbiddenError {
  constructor() {
    super('This route declares no authentication policy and is closed');
  }
}

/**
 * Global guard that enforces each route's declared policy. A route that declares none is refused
 * (fail closed); the route-coverage test makes sure none ships that way.
 */
@Injectable()
export class AuthPolicyGuard implements CanActivate {
  private readonly logger = new Logger(AuthPolicyGuard.name);
  private readonly bearer = new (AuthGuard(BEARER_STRATEGY))();

  constructor(private readonly reflector: Reflector) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const policy = this.reflector.getAllAndOverride<AuthPolicy | undefined>(AUTH_POLICY, [context.getHandler(), context.getClass()]);
    if (!policy) {
      this.logger.error(`route ${context.getClass().name}.${context.getHandler().name} has no auth policy`);
      throw new RouteWithoutAuthPolicyError();
    }
    if (policy.kind === 'public') return true;
    await this.bearer.canActivate(context);
    const user = context.switchToHttp().getRequest<{ user: AuthenticatedUser }>().user;
    if (policy.roles.length > 0 && !policy.roles.includes(user.role)) {
      throw new ForbiddenError(`This action requires the ${policy.roles.join(' or ')} role`);
    }
    return true;
  }
}
