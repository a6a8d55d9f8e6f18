import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { AppConfig } from './src/config/app-config';
import { DataDirLock } from './src/database/data-dir-lock';
import { buildDataSourceOptions } from './src/database/data-source-options';

const config = AppConfig.fromEnvironment(process.env);
// The embedded database is the service's while it runs: the CLI refuses, as a second instance does.
if (!config.database.url) DataDirLock.acquire(config.dataDir, config.instanceId);

/** The DataSource the TypeORM CLI uses (`npm run migration:generate` / `migration:run`). */
export default new DataSource(buildDataSourceOptions(config));
