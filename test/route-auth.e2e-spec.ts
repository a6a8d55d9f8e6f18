import { Controller, Get } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { APP_GUARD, DiscoveryModule } from '@nestjs/core';
import { HttpExceptionFilter } from '../src/common/http-exception.filter';
import { AuthPolicyGuard } from '../src/modules/auth/auth-policy.guard';
import { RouteAuthAudit } from '../src/modules/auth/route-auth-audit';
import { Public } from '../src/common/auth-policy.decorator';
import { call } from './support/http';
import { startTestApp, TestApp } from './support/test-app';

@Controller('forgotten')
class ForgottenController {
  @Get()
  open(): string {
    return 'should never be served';
  }
}

@Controller('declared')
class DeclaredController {
  @Get()
  @Public()
  open(): string {
    return 'ok';
  }
}

describe('route auth coverage', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await startTestApp();
  });
  afterAll(() => app?.close({ purge: true }));

  it('finds an auth policy on every route of the application', () => {
    const audit = app.app.get(RouteAuthAudit);
    const routes = audit.routes();
    expect(routes.map((route) => route.route)).toEqual(expect.arrayContaining(['POST /api/auth/login', 'GET /api/auth/me', 'GET /api/users']));
    expect(audit.undeclared()).toEqual([]);
    expect(routes.find((route) => route.route === 'POST /api/auth/login')?.policy).toEqual({ kind: 'public' });
    expect(routes.find((route) => route.route === 'GET /api/users')?.policy).toEqual({ kind: 'authenticated', roles: ['admin'] });
  });

  it('reports a route that declares nothing', async () => {
    const module = await Test.createTestingModule({ imports: [DiscoveryModule], controllers: [ForgottenController, DeclaredController], providers: [RouteAuthAudit] }).compile();
    const undeclared = module.get(RouteAuthAudit).undeclared();
    expect(undeclared.map((route) => route.route)).toEqual(['GET /forgotten']);
  });

  it('refuses to serve a route that declares nothing (fail closed)', async () => {
    const module = await Test.createTestingModule({
      controllers: [ForgottenController, DeclaredController],
      providers: [{ provide: APP_GUARD, useClass: AuthPolicyGuard }],
    }).compile();
    const nest = module.createNestApplication({ logger: false });
    nest.useGlobalFilters(new HttpExceptionFilter());
    await nest.listen(0, '127.0.0.1');
    try {
      const url = await nest.getUrl();
      expect((await call(url.replace('[::1]', '127.0.0.1'), 'GET', '/forgotten')).status).toBe(403);
      expect((await call(url.replace('[::1]', '127.0.0.1'), 'GET', '/declared')).status).toBe(200);
    } finally {
      await nest.close();
    }
  });
});
