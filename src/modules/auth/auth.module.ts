import { Module } from '@nestjs/common';
import { APP_GUARD, DiscoveryModule } from '@nestjs/core';
import { JwtModule } from '@nestjs/jwt';
import { PassportModule } from '@nestjs/passport';
import { ThrottlerModule } from '@nestjs/throttler';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AppConfig } from '../../config/app-config';
import { UsersModule } from '../users/users.module';
import { ApiToken } from './api-token.entity';
import { ApiTokensService } from './api-tokens.service';
import { AuthPolicyGuard } from './auth-policy.guard';
import { AuthController } from './auth.controller';
import { AuthService } from './auth.service';
import { BearerStrategy } from './bearer.strategy';
import { resolveJwtSecret } from './jwt-secret';
import { RouteAuthAudit } from './route-auth-audit';

@Module({
  imports: [
    UsersModule,
    PassportModule,
    DiscoveryModule,
    TypeOrmModule.forFeature([ApiToken]),
    JwtModule.registerAsync({
      inject: [AppConfig],
      useFactory: (config: AppConfig) => ({ secret: resolveJwtSecret(config), signOptions: { algorithm: 'HS256' }, verifyOptions: { algorithms: ['HS256'] } }),
    }),
    ThrottlerModule.forRootAsync({
      inject: [AppConfig],
      useFactory: (config: AppConfig) => {
        const window = { ttl: config.auth.loginRateWindowSeconds * 1000, limit: config.auth.loginRateLimit };
        // per client address, and per account: rotating addresses does not buy more guesses at one password
        return [
          { name: 'login', ...window },
          { name: 'login-email', ...window, getTracker: loginEmailOf },
        ];
      },
    }),
  ],
  controllers: [AuthController],
  providers: [AuthService, ApiTokensService, BearerStrategy, RouteAuthAudit, { provide: APP_GUARD, useClass: AuthPolicyGuard }],
  exports: [RouteAuthAudit],
})
export class AuthModule {}

/** The email a login attempt names, as the per-account limiter counts it. */
function loginEmailOf(request: Record<string, any>): string {
  const email = (request.body as { email?: unknown } | undefined)?.email;
  return typeof email === 'string' ? email.trim().toLowerCase() : '(none)';
}
