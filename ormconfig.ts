import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { AppConfig } from './src/config/app-config';
import { buildDataSourceOptions } from './src/database/data-source-options';

/** The DataSource the TypeORM CLI uses (`npm run migration:generate` / `migration:run`). */
export default new DataSource(buildDataSourceOptions(AppConfig.fromEnvironment(process.env)));
