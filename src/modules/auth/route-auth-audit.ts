import { Injectable, RequestMethod } from '@nestjs/common';
import { PATH_METADATA, METHOD_METADATA } from '@nestjs/common/constants.js';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import { AUTH_POLICY, AuthPolicy } from '../../common/auth-policy.decorator';

export interface RouteAuth {
  route: string;
  handler: string;
  policy: AuthPolicy | undefined;
}

/** Lists every HTTP route of the running application with the auth policy it declares. */
@Injectable()
export class RouteAuthAudit {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
  ) {}

  routes(): RouteAuth[] {
    return this.discovery.getControllers().flatMap(({ metatype, instance }) => {
      if (!metatype || !instance) return [];
      const prototype = Object.getPrototypeOf(instance);
      const base = String(Reflect.getMetadata(PATH_METADATA, metatype) ?? '');
      return this.scanner.getAllMethodNames(prototype).flatMap((name) => {
        const handler = prototype[name];
        const path = Reflect.getMetadata(PATH_METADATA, handler);
        if (path === undefined) return [];
        const method = RequestMethod[Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod];
        const policy = this.reflector.getAllAndOverride<AuthPolicy | undefined>(AUTH_POLICY, [handler, metatype]);
        return [{ route: `${method} /${[base, String(path)].filter((part) => part && part !== '/').join('/')}`, handler: `${metatype.name}.${name}`, policy }];
      });
    });
  }

  undeclared(): RouteAuth[] {
    return this.routes().filter((route) => !route.policy);
  }
}
