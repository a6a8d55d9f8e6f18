import { Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { statfs } from 'node:fs/promises';
import { AppConfig } from '../../config/app-config';

/**
 * Free space on DATA_DIR's filesystem (PGlite, volumes, local snapshots): down below
 * DATA_DIR_MIN_FREE_MB, saying so, because writes are about to fail (they answer 503 meanwhile).
 */
@Injectable()
export class DataDirDiskHealthIndicator {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly config: AppConfig,
  ) {}

  async check(): Promise<HealthIndicatorResult> {
    const session = this.indicators.check('disk');
    const minFreeBytes = this.config.dataDirMinFreeBytes;
    let freeBytes: number;
    try {
      const stats = await statfs(this.config.dataDir);
      freeBytes = stats.bavail * stats.bsize;
    } catch (error) {
      return session.down({ message: `the data directory's filesystem cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})` });
    }
    const details = { free_bytes: freeBytes, min_free_bytes: minFreeBytes };
    if (freeBytes >= minFreeBytes) return session.up(details);
    return session.down({ ...details, message: "the data directory's disk is full: writes fail until space is freed (DATA_DIR_MIN_FREE_MB)" });
  }
}
