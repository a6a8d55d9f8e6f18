import { ApiProperty } from '@nestjs/swagger';

export class SnapshotStatsResponse {
  @ApiProperty({ example: 1800000000 }) version: number;
  @ApiProperty({ example: 42 }) files: number;
  @ApiProperty({ example: 183502 }) bytes_total: number;
  @ApiProperty({ description: 'Content bytes uploaded; unchanged files are copied inside the store', example: 2048 }) bytes_uploaded: number;
  @ApiProperty({ example: 40 }) files_copied: number;
  @ApiProperty({ example: 310 }) duration_ms: number;
  @ApiProperty({ type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, error: { type: 'string' } } }, example: [] }) errors: { path: string; error: string }[];
  @ApiProperty({ type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, reason: { type: 'string' } } }, example: [] }) skipped: { path: string; reason: string }[];
}

export class SnapshotVersionResponse {
  @ApiProperty({ example: 1800000000 }) version: number;
  @ApiProperty({ example: '2027-01-15T08:00:00.000Z' }) created_at: string;
  @ApiProperty({ example: 42 }) files: number;
  @ApiProperty({ example: 183502 }) bytes: number;
}
