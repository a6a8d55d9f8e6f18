import { ExecutionContext, Logger } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { ForbiddenError } from '../../common/domain-error';
import { AdminOnly, Authenticated, Public } from '../../common/auth-policy.decorator';
import { AuthPolicyGuard, RouteWithoutAuthPolicyError } from './auth-policy.guard';
import { InvalidBearerTokenError } from './auth.errors';
import { AuthenticatedUser } from './authenticated-user';

class OpenController {
  @Public() health() {}
  @Authenticated() me() {}
  @AdminOnly() createUser() {}
  forgotten() {}
}

@AdminOnly()
class AdminController {
  list() {}
  @Public() status() {}
}

const member: AuthenticatedUser = { id: 'u-1', email: 'dev@example.com', role: 'member', accountId: 'acc-1', via: 'jwt' };
const admin: AuthenticatedUser = { ...member, id: 'u-2', role: 'admin' };

/** The request a route handler would see, with the user the bearer strategy attached (if any). */
function contextFor(controller: new () => object, handler: string, request: { user?: AuthenticatedUser } = {}): ExecutionContext {
  return {
    getClass: () => controller,
    getHandler: () => (controller.prototype as Record<string, unknown>)[handler],
    switchToHttp: () => ({ getRequest: () => request }),
  } as unknown as ExecutionContext;
}

describe('AuthPolicyGuard', () => {
  let guard: AuthPolicyGuard;
  /** Stands in for the passport bearer check; a call the test did not expect fails. */
  let bearer: { canActivate: jest.Mock };

  beforeEach(() => {
    jest.spyOn(Logger.prototype, 'error').mockImplementation(() => undefined);
    guard = new AuthPolicyGuard(new Reflector());
    bearer = { canActivate: jest.fn(() => Promise.reject(new Error('unexpected bearer check'))) };
    Object.assign(guard, { bearer });
  });
  afterEach(() => jest.restoreAllMocks());

  it('lets anyone call a public route without checking credentials', async () => {
    await expect(guard.canActivate(contextFor(OpenController, 'health'))).resolves.toBe(true);
    expect(bearer.canActivate).not.toHaveBeenCalled();
  });

  it('refuses a route that declares no policy, even with valid credentials', async () => {
    await expect(guard.canActivate(contextFor(OpenController, 'forgotten', { user: admin }))).rejects.toThrow(RouteWithoutAuthPolicyError);
  });

  it('lets an authenticated user call a route without role requirement', async () => {
    bearer.canActivate.mockResolvedValueOnce(true);

    await expect(guard.canActivate(contextFor(OpenController, 'me', { user: member }))).resolves.toBe(true);
  });

  it('refuses missing or invalid credentials on an authenticated route', async () => {
    bearer.canActivate.mockRejectedValueOnce(new InvalidBearerTokenError());

    await expect(guard.canActivate(contextFor(OpenController, 'me'))).rejects.toThrow(InvalidBearerTokenError);
  });

  it('refuses a member on an admin route, naming the role', async () => {
    bearer.canActivate.mockResolvedValueOnce(true);

    const refusal = guard.canActivate(contextFor(OpenController, 'createUser', { user: member }));

    await expect(refusal).rejects.toThrow(ForbiddenError);
    await expect(refusal).rejects.toThrow(/admin/);
  });

  it('lets an admin call an admin route', async () => {
    bearer.canActivate.mockResolvedValueOnce(true);

    await expect(guard.canActivate(contextFor(OpenController, 'createUser', { user: admin }))).resolves.toBe(true);
  });

  it('applies a policy declared on the controller to its routes', async () => {
    bearer.canActivate.mockResolvedValueOnce(true);

    await expect(guard.canActivate(contextFor(AdminController, 'list', { user: member }))).rejects.toThrow(ForbiddenError);
  });

  it('lets a route policy override the controller policy', async () => {
    await expect(guard.canActivate(contextFor(AdminController, 'status'))).resolves.toBe(true);
  });
});
