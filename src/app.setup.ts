import { BadRequestException, INestApplication, Logger as NestLogger, ValidationError, ValidationPipe } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { existsSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { dirname, join } from 'node:path';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { Logger } from 'nestjs-pino';
import { AppModule, AppModuleOptions } from './app.module';
import { jsonBodyReviver } from './common/json-body-guards';
import { ensurePrivateDataDir, useOwnerOnlyUmask } from './common/private-files';
import type { AppConfig } from './config/app-config';
import { DataDirLock } from './database/data-dir-lock';
import { ModelGatewayHandler } from './modules/model-gateway/model-gateway.handler';

/** Builds the fully configured application; main.ts and the e2e tests share it. */
export async function createApp(options: AppModuleOptions): Promise<NestExpressApplication> {
  useOwnerOnlyUmask();
  prepareDataDirBeforeTheDatabaseOpens(options.config);
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(options), { bufferLogs: true, bodyParser: false });
  app.useLogger(app.get(Logger));
  // Modal sandboxes reach the gateway at MODEL_GATEWAY_PUBLIC_URL (= this service + /model-gateway):
  // mounted first, so the request body streams upstream untouched by body parsers, and no API route answers there.
  app.use('/model-gateway', app.get(ModelGatewayHandler).handle);
  // File uploads stream their raw body to the volume, whatever content type the client sends.
  app.useBodyParser('json', {
    limit: options.config.http.bodyLimit,
    type: (request: IncomingMessage) => isJsonRequest(request) && !isFileUpload(request),
    reviver: jsonBodyReviver(MAX_JSON_DEPTH),
  });
  // Off unless configured: a client address from X-Forwarded-For is only believed from named proxies.
  if (options.config.http.trustProxy !== undefined) app.set('trust proxy', options.config.http.trustProxy);
  app.disable('x-powered-by');
  app.useGlobalPipes(
    new ValidationPipe({
      whitelist: true,
      forbidNonWhitelisted: true,
      transform: true,
      exceptionFactory: (errors) => new BadRequestException(flattenValidationErrors(errors)),
    }),
  );
  setUpSwagger(app);
  serveChatPage(app);
  return app;
}

/**
 * With the embedded database, DATA_DIR is locked first: a second process on it stops here with
 * DataDirInUseError, having changed nothing (the lock is released once the database is closed).
 * Then DATA_DIR is made private. The log lines are buffered like Nest's own start-up logs, so that
 * they reach the JSON log once the app's logger is in place (or the console, should start-up fail).
 */
function prepareDataDirBeforeTheDatabaseOpens(config: AppConfig): void {
  NestLogger.attachBuffer();
  const logger = new NestLogger('DataDir');
  try {
    if (!config.database.url) {
      const lock = DataDirLock.acquire(config.dataDir, config.instanceId);
      if (lock.leftBy) logger.warn({ path: config.dataDir, previous_holder: lock.leftBy }, 'DATA_DIR was locked by a process that ended without releasing it; it is this instance\'s now');
    }
    ensurePrivateDataDir(config.dataDir, logger);
  } catch (error) {
    NestLogger.flush();
    throw error;
  }
}

/** Deeper JSON is refused before class-transformer, which recurses once per level. */
const MAX_JSON_DEPTH = 64;
const CHAT_PAGE_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/** The chat page from static/, and its browser libraries from their npm packages (never a CDN). */
function serveChatPage(app: NestExpressApplication): void {
  const vendor: Record<string, string> = {
    '/vendor/marked.esm.js': join(packageDir('marked'), 'lib', 'marked.esm.js'),
    '/vendor/purify.es.mjs': join(packageDir('dompurify'), 'dist', 'purify.es.mjs'),
  };
  for (const [route, file] of Object.entries(vendor)) {
    app.use(route, (_request: unknown, response: { type(t: string): { sendFile(f: string): void } }) => response.type('text/javascript').sendFile(file));
  }
  app.useStaticAssets(join(projectRoot(), 'static'), {
    index: 'index.html',
    maxAge: 0,
    // Model output is untrusted: even if something slipped past DOMPurify, no inline script may run.
    setHeaders: (response: { setHeader(name: string, value: string): void }) => response.setHeader('Content-Security-Policy', CHAT_PAGE_CSP),
  });
}

function packageDir(name: string): string {
  return nearestPackageDir(dirname(require.resolve(name)));
}

function projectRoot(): string {
  return nearestPackageDir(__dirname);
}

function nearestPackageDir(start: string): string {
  let dir = start;
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

function isJsonRequest(request: IncomingMessage): boolean {
  return /^application\/([\w.+-]+\+)?json\b/i.test(request.headers['content-type'] ?? '');
}

function isFileUpload(request: IncomingMessage): boolean {
  return request.method === 'PUT' && /\/files\/content(\?|$)/.test(request.url ?? '');
}

function setUpSwagger(app: INestApplication): void {
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Modal Sandbox System')
      .setDescription('Isolated sandboxes running the Claude Code agent, with live streaming and versioned workspace snapshots.')
      .setVersion('0.1.0')
      .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'A JWT from POST /api/auth/login or an API token (mss_…)' })
      .build(),
  );
  SwaggerModule.setup('docs', app, document, { jsonDocumentUrl: 'docs-json' });
}

/** One message per offending field, nested fields named by their full path (`env.FOO`). */
export function flattenValidationErrors(errors: ValidationError[], parent = ''): string[] {
  return errors.flatMap((error) => {
    const path = parent ? `${parent}.${error.property}` : error.property;
    const own = Object.values(error.constraints ?? {}).map((message) => namedMessage(message, error.property, path));
    return [...own, ...flattenValidationErrors(error.children ?? [], path)];
  });
}

function namedMessage(message: string, property: string, path: string): string {
  if (message.startsWith(property)) return path + message.slice(property.length);
  return message.includes(property) ? message : `${path}: ${message}`;
}
