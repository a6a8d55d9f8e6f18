import { Injectable } from '@nestjs/common';
import { InvalidInputError } from '../../common/domain-error';
import { type CachedImage, SandboxProvider } from '../../integrations/sandbox/sandbox-provider';

const DIGEST = /^sha256:[0-9a-f]{64}$/;

export class InvalidImageDigestError extends InvalidInputError {
  constructor(value: string) {
    super(`digest: ${JSON.stringify(value.slice(0, 100))} is not an image digest (sha256:<64 lowercase hex digits>)`, { field: 'digest' });
  }
}

/** The sandbox engine's registry image cache (the local engine keeps one; Modal keeps images in Modal). */
@Injectable()
export class ImagesService {
  constructor(private readonly provider: SandboxProvider) {}

  /** The cached images, most recently used first; undefined when the engine keeps no image cache. */
  list(): Promise<CachedImage[] | undefined> {
    return this.provider.listImages();
  }

  async remove(digest: string): Promise<void> {
    if (!DIGEST.test(digest)) throw new InvalidImageDigestError(digest);
    await this.provider.removeImage(digest);
  }
}
