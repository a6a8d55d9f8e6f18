import { createParamDecorator, ExecutionContext } from '@nestjs/common';
import { UserRole } from '../users/user.entity';

/** Who is calling: attached to the request by the bearer strategy. */
export interface AuthenticatedUser {
  id: string;
  email: string;
  role: UserRole;
  accountId: string;
  via: 'jwt' | 'api_token';
}

export const CurrentUser = createParamDecorator(
  (_data: unknown, context: ExecutionContext): AuthenticatedUser => context.switchToHttp().getRequest().user,
);
