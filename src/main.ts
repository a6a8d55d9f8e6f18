import 'reflect-metadata';
import { INestApplication, Logger } from '@nestjs/common';
import { createApp } from './app.setup';
import { useOwnerOnlyUmask } from './common/private-files';
import { AppConfig } from './config/app-config';
import { ConfigValidationError } from './config/environment';
import { DataDirInUseError } from './database/data-dir-lock';

async function bootstrap(): Promise<void> {
  useOwnerOnlyUmask();
  let config: AppConfig;
  try {
    config = AppConfig.fromEnvironment(process.env);
  } catch (error) {
    if (error instanceof ConfigValidationError) {
      process.stderr.write(`${error.message}\nSee .env.example and the README's configuration table.\n`);
      process.exit(1);
    }
    throw error;
  }
  let app: INestApplication;
  try {
    app = await createApp({ config });
  } catch (error) {
    if (error instanceof DataDirInUseError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  stopGracefullyOn(['SIGTERM', 'SIGINT'], app);
  await app.listen(config.http.port, config.http.host);
  const url = `http://${config.http.host === '0.0.0.0' ? 'localhost' : config.http.host}:${config.http.port}`;
  new Logger('Bootstrap').log(`Listening on ${url} — API docs at ${url}/docs, chat page at ${url}/`);
}

const FORCED_EXIT_AFTER_MS = 15_000;

/**
 * On a signal: close the app (sandboxes stopped, runs interrupted, database closed) and let the
 * process end by itself, so the last log lines are flushed; force the exit only if something hangs.
 */
function stopGracefullyOn(signals: NodeJS.Signals[], app: INestApplication): void {
  const stop = (signal: NodeJS.Signals) => {
    new Logger('Bootstrap').log(`${signal} received, shutting down`);
    setTimeout(() => process.exit(1), FORCED_EXIT_AFTER_MS).unref();
    app.close().then(
      () => (process.exitCode = 0),
      (error: Error) => {
        new Logger('Bootstrap').error({ err: error }, 'shutdown failed');
        process.exitCode = 1;
      },
    );
  };
  for (const signal of signals) process.once(signal, stop);
}

void bootstrap();
