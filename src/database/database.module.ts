import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AppConfig } from '../config/app-config';
import { buildDataSourceOptions } from './data-source-options';

/** PGlite or PostgreSQL; pending migrations run at start-up on either. */
@Module({
  imports: [
    TypeOrmModule.forRootAsync({
      inject: [AppConfig],
      useFactory: (config: AppConfig) => ({ ...buildDataSourceOptions(config), migrationsRun: true, migrationsTransactionMode: 'each' }),
    }),
  ],
})
export class DatabaseModule {}
