import type { App } from 'modal';
import type { DomainError } from '../../../common/domain-error';
import { reportProgress, type SandboxSpec } from '../sandbox-provider';
import { ImageStepFailedError, UnsupportedImageError } from '../sandbox-provider.errors';
import type { ModalClientLike, ModalImageLike } from './modal-client';
import type { ModalCall } from './modal-errors';

/** The Claude Code CLI version pinned in package.json, so the Modal image runs the same CLI. */
export const CLAUDE_CODE_VERSION: string = (require('@anthropic-ai/claude-code/package.json') as { version: string }).version;

/** Image used when a sandbox names no image (imageBase omitted or 'host'). */
export const DEFAULT_MODAL_BASE_IMAGE = 'node:20-bookworm-slim';
export const DEFAULT_MODAL_IMAGE_COMMANDS: readonly string[] = [
  'RUN apt-get update && apt-get install -y --no-install-recommends bash git ripgrep ca-certificates && rm -rf /var/lib/apt/lists/*',
  `RUN npm install -g @anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}`,
];

/** Deadline of one image build; longer than a plain call, since a first build installs packages. */
export const IMAGE_BUILD_TIMEOUT_SECONDS = 1200;

const OUTPUT_TAIL_LENGTH = 2000;

/**
 * Builds the sandbox image on Modal: the base image first, then each Dockerfile command of the spec
 * as a layer of its own, so a failure names its step. Modal
 * caches layers itself but the SDK does not tell whether a layer came from its cache.
 */
export async function buildModalImage(client: ModalClientLike, app: App, spec: SandboxSpec, call: ModalCall): Promise<ModalImageLike> {
  const customTag = spec.imageBase && spec.imageBase !== 'host' ? spec.imageBase : undefined;
  const baseTag = customTag ?? DEFAULT_MODAL_BASE_IMAGE;
  // Layer 1 is the base image (with the default commands when none is named), then one per Dockerfile command.
  const layers = 1 + spec.dockerfileCommands.length;
  reportProgress(spec.onProgress, { phase: 'building', step: 1, steps: layers, detail: `image ${baseTag}` });
  let image = await buildLayer(app, call, `image ${baseTag}`, () => {
    const registryImage = client.images.fromRegistry(baseTag);
    return customTag ? registryImage : registryImage.dockerfileCommands([...DEFAULT_MODAL_IMAGE_COMMANDS]);
  }, (output) => new UnsupportedImageError(`image ${baseTag} could not be built on Modal: ${output}`, { step: 'image', image: baseTag }));

  for (const [index, instruction] of spec.dockerfileCommands.entries()) {
    const base = image;
    reportProgress(spec.onProgress, { phase: 'building', step: index + 2, steps: layers, detail: instruction });
    image = await buildLayer(app, call, `image step ${index + 1}`, () => base.dockerfileCommands([instruction]), (output) =>
      new ImageStepFailedError(index, instruction, exitCodeOf(output), output),
    );
  }
  return image;
}

function buildLayer(app: App, call: ModalCall, what: string, layer: () => ModalImageLike, onBuildFailure: (output: string) => DomainError): Promise<ModalImageLike> {
  return call('image', what, async () => {
    try {
      return await layer().build(app);
    } catch (error) {
      throw isBuildFailure(error) ? onBuildFailure(tail((error as Error).message)) : error;
    }
  }, IMAGE_BUILD_TIMEOUT_SECONDS);
}

/** Image.build() reports a failed build as a plain Error starting with "Image build for". */
function isBuildFailure(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('Image build for');
}

function exitCodeOf(output: string): number {
  const match = /non-zero (?:exit )?(?:code|status):? (\d+)/i.exec(output);
  return match ? Number(match[1]) : 1;
}

function tail(text: string): string {
  return text.length > OUTPUT_TAIL_LENGTH ? text.slice(text.length - OUTPUT_TAIL_LENGTH) : text;
}
