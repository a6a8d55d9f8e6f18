import { applyDecorators, SetMetadata } from '@nestjs/common';
import { ApiBearerAuth, ApiForbiddenResponse, ApiUnauthorizedResponse } from '@nestjs/swagger';
import type { UserRole } from './user-role';

export const AUTH_POLICY = 'auth_policy';
export type AuthPolicy = { kind: 'public' } | { kind: 'authenticated'; roles: UserRole[] };

/** Anyone may call this route. */
export const Public = () => SetMetadata(AUTH_POLICY, { kind: 'public' } satisfies AuthPolicy);

/** A valid bearer credential (JWT or API token) is required; with roles, the user must hold one. */
export const Authenticated = (...roles: UserRole[]) =>
  applyDecorators(
    SetMetadata(AUTH_POLICY, { kind: 'authenticated', roles } satisfies AuthPolicy),
    ApiBearerAuth(),
    ApiUnauthorizedResponse({ description: 'Missing, invalid, expired or revoked credentials' }),
    ...(roles.length > 0 ? [ApiForbiddenResponse({ description: `Requires role: ${roles.join(' or ')}` })] : []),
  );

export const AdminOnly = () => Authenticated('admin');
