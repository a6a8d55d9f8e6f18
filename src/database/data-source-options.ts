import { DataSourceOptions } from 'typeorm';
import { AppConfig } from '../config/app-config';
import { ENTITIES } from './entities';
import { MIGRATIONS } from './migrations';
import { pgliteDriver } from './pglite-driver';
import { SnakeNamingStrategy } from './snake-naming.strategy';

/** One definition for the app and the migration CLI: PGlite under DATA_DIR, or PostgreSQL via DATABASE_URL. */
export function buildDataSourceOptions(config: AppConfig): DataSourceOptions {
  const common = {
    type: 'postgres' as const,
    entities: ENTITIES,
    migrations: MIGRATIONS,
    migrationsRun: false,
    synchronize: false,
    namingStrategy: new SnakeNamingStrategy(),
    uuidExtension: 'pgcrypto' as const,
    installExtensions: false,
    // Not 'error': TypeORM would print failed queries with their parameters (hashes, prompts); errors reach our filter.
    logging: ['warn', 'migration'] as ('warn' | 'migration')[],
  };
  if (config.database.url) {
    return { ...common, url: config.database.url, poolSize: 10 };
  }
  return { ...common, driver: pgliteDriver(config.dataDir) };
}
