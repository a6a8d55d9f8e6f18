import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { createApp } from './app.setup';
import { AppConfig } from './config/app-config';
import { ConfigValidationError } from './config/environment';

async function bootstrap(): Promise<void> {
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
  const app = await createApp({ config });
  await app.listen(config.http.port, config.http.host);
  const url = `http://${config.http.host === '0.0.0.0' ? 'localhost' : config.http.host}:${config.http.port}`;
  new Logger('Bootstrap').log(`Listening on ${url} — API docs at ${url}/docs, chat page at ${url}/`);
}

void bootstrap();
