import { CanActivate, createParamDecorator, ExecutionContext, Injectable } from '@nestjs/common';
import type { Request } from 'express';
import type { AuthenticatedUser } from '../auth/authenticated-user';
import type { Sandbox } from './sandbox.entity';
import { SandboxNotFoundError } from './sandboxes.errors';
import { SandboxesService } from './sandboxes.service';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export type SandboxRequest = Request & { user: AuthenticatedUser; sandbox?: Sandbox };

export function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

/**
 * Loads the route's sandbox (`:id`) once, for the caller's account only: another account's sandbox,
 * like an id that cannot exist, is a 404. Runs before the handler, so nothing has been answered yet.
 */
@Injectable()
export class SandboxAccessGuard implements CanActivate {
  constructor(private readonly sandboxes: SandboxesService) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<SandboxRequest>();
    const { id } = request.params as Record<string, string>;
    if (!isUuid(id)) throw new SandboxNotFoundError();
    request.sandbox = await this.sandboxes.findOwned(request.user.accountId, id);
    return true;
  }
}

/** The sandbox SandboxAccessGuard loaded for this request. */
export const CurrentSandbox = createParamDecorator((_data: unknown, context: ExecutionContext): Sandbox => {
  const { sandbox } = context.switchToHttp().getRequest<SandboxRequest>();
  if (!sandbox) throw new Error('CurrentSandbox used on a route without SandboxAccessGuard');
  return sandbox;
});
