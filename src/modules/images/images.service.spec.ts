import type { SandboxProvider } from '../../integrations/sandbox/sandbox-provider';
import { ImageInUseError } from '../../integrations/sandbox/sandbox-provider.errors';
import { InvalidImageDigestError, ImagesService } from './images.service';

const DIGEST = `sha256:${'ab'.repeat(32)}`;

/** The engine as a strict mock: only listImages and removeImage exist. */
function provider() {
  return { listImages: jest.fn(), removeImage: jest.fn() };
}

describe('ImagesService', () => {
  it('passes the engine’s listing through (undefined = no image cache)', async () => {
    const engine = provider();
    engine.listImages.mockResolvedValueOnce(undefined);
    await expect(new ImagesService(engine as unknown as SandboxProvider).list()).resolves.toBeUndefined();
  });

  it.each(['sha256:abc', `SHA256:${'ab'.repeat(32)}`, `sha512:${'ab'.repeat(32)}`, `sha256:${'AB'.repeat(32)}`, 'alpine:3.21'])('refuses %s naming the digest field, without asking the engine', async (digest) => {
    const engine = provider();
    const removal = new ImagesService(engine as unknown as SandboxProvider).remove(digest);
    await expect(removal).rejects.toBeInstanceOf(InvalidImageDigestError);
    await expect(removal).rejects.toMatchObject({ details: { field: 'digest' }, message: expect.stringMatching(/^digest: /) });
    expect(engine.removeImage).not.toHaveBeenCalled();
  });

  it('asks the engine to remove a valid digest and passes its refusal on', async () => {
    const engine = provider();
    engine.removeImage.mockResolvedValueOnce(undefined).mockRejectedValueOnce(new ImageInUseError(DIGEST));
    const images = new ImagesService(engine as unknown as SandboxProvider);
    await images.remove(DIGEST);
    await expect(images.remove(DIGEST)).rejects.toBeInstanceOf(ImageInUseError);
    expect(engine.removeImage).toHaveBeenCalledWith(DIGEST);
  });
});
