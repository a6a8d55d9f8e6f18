import { DynamicModule, Logger, Module, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { APP_FILTER, APP_INTERCEPTOR } from '@nestjs/core';
import { LoggerModule } from 'nestjs-pino';
import type { DestinationStream } from 'pino';
import { HttpExceptionFilter } from './common/http-exception.filter';
import { stdoutLogDestination } from './common/log-destination';
import { buildLoggerParams } from './common/logging';
import { ResponseEnvelopeInterceptor } from './common/response-envelope.interceptor';
import { StartupModule, StartupState } from './common/startup-state';
import { AppConfig } from './config/app-config';
import { ConfigModule } from './config/config.module';
import { DatabaseModule } from './database/database.module';
import { AuthModule } from './modules/auth/auth.module';
import { HealthModule } from './modules/health/health.module';
import { ImagesModule } from './modules/images/images.module';
import { ModelGatewayModule } from './modules/model-gateway/model-gateway.module';
import { FilesModule } from './modules/files/files.module';
import { RunsModule } from './modules/runs/runs.module';
import { SandboxesModule } from './modules/sandboxes/sandboxes.module';
import { UsersModule } from './modules/users/users.module';

export interface AppModuleOptions {
  config: AppConfig;
  /** Where JSON log lines go; stdout, never blocking the service, when omitted (tests pass a capturing stream). */
  logDestination?: DestinationStream;
}

@Module({})
export class AppModule implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(AppModule.name);

  constructor(private readonly startup: StartupState) {}

  /**
   * The root module's own hook. Nest runs these hooks module by module, awaiting each, from the
   * deepest imports up to the root, so this one runs last: once every other module's
   * onApplicationBootstrap (sandboxes re-attached, runs resumed) has finished.
   */
  onApplicationBootstrap(): void {
    this.startup.markReady();
  }

  /** Runs after every module released its resources (sandboxes stopped, runs interrupted, database closed). */
  onApplicationShutdown(signal?: string): void {
    this.logger.log({ signal }, 'service shut down gracefully');
  }

  static forRoot({ config, logDestination }: AppModuleOptions): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        StartupModule,
        LoggerModule.forRoot(buildLoggerParams(config.logLevel, config.instanceId, logDestination ?? stdoutLogDestination(config.logBufferLimitBytes))),
        DatabaseModule,
        UsersModule,
        AuthModule,
        HealthModule,
        SandboxesModule,
        RunsModule,
        ModelGatewayModule,
        FilesModule,
        ImagesModule,
      ],
      providers: [
        { provide: APP_FILTER, useClass: HttpExceptionFilter },
        { provide: APP_INTERCEPTOR, useClass: ResponseEnvelopeInterceptor },
      ],
    };
  }
}
