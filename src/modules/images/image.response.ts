import { ApiProperty } from '@nestjs/swagger';
import type { CachedImage } from '../../integrations/sandbox/sandbox-provider';

export class ImageResponse {
  @ApiProperty({ example: 'sha256:3d5a4f0e0c1bb7e1f2a9c1f9f1a0a6b3e1d1c6f4a9a0b8d5c2e7f3a1b9c8d7e6', description: 'Manifest digest' })
  digest: string;

  @ApiProperty({ example: '127.0.0.1:5000/team/alpine:3.21', description: 'The reference it was pulled by (canonical form)' })
  reference: string;

  @ApiProperty({ example: 8_123_456, description: 'Apparent size of its unpacked files (hard links counted once)' })
  size_bytes: number;

  @ApiProperty({ example: '2026-12-02T13:40:00.000Z', description: 'When a sandbox was last created from it (its pull time if never)' })
  last_used_at: string;

  @ApiProperty({ example: '2026-12-01T09:12:00.000Z' })
  pulled_at: string;

  @ApiProperty({ example: true, description: 'A sandbox runs on it (or is being created on it): it cannot be deleted nor pruned' })
  in_use: boolean;

  static from(image: CachedImage): ImageResponse {
    return {
      digest: image.digest,
      reference: image.reference,
      size_bytes: image.sizeBytes,
      last_used_at: image.lastUsedAt.toISOString(),
      pulled_at: image.pulledAt.toISOString(),
      in_use: image.inUse ?? false,
    };
  }
}
