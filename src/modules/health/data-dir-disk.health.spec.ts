import { HealthIndicatorService } from '@nestjs/terminus';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AppConfig } from '../../config/app-config';
import { DataDirDiskHealthIndicator } from './data-dir-disk.health';

function indicator(dataDir: string, dataDirMinFreeBytes: number): DataDirDiskHealthIndicator {
  return new DataDirDiskHealthIndicator(new HealthIndicatorService(), { dataDir, dataDirMinFreeBytes } as AppConfig);
}

describe('DataDirDiskHealthIndicator', () => {
  it('is up with the free bytes of the data directory when there are enough', async () => {
    const result = await indicator(tmpdir(), 0).check();

    expect(result).toEqual({ disk: { status: 'up', free_bytes: expect.any(Number), min_free_bytes: 0 } });
    expect(result.disk.free_bytes).toBeGreaterThan(0);
  });

  it('is down below the threshold, saying the disk is full', async () => {
    const result = await indicator(tmpdir(), Number.MAX_SAFE_INTEGER).check();

    expect(result.disk).toMatchObject({ status: 'down', min_free_bytes: Number.MAX_SAFE_INTEGER, message: expect.stringContaining('disk is full') });
  });

  it('is down, naming the error, when the data directory cannot be examined', async () => {
    const result = await indicator(join(tmpdir(), 'no-such-dir-for-mss-health'), 0).check();

    expect(result.disk).toEqual({ status: 'down', message: expect.stringContaining('ENOENT') });
  });
});
