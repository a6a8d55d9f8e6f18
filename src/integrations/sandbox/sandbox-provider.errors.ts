import {
  ConflictError,
  DeadlineExceededError,
  InvalidInputError,
  NotFoundError,
  UnavailableError,
  UnprocessableError,
  UpstreamError,
} from '../../common/domain-error';

/** The step of sandbox work that failed, named in every provider error (seed 1.6, 10.1). */
export type ProviderStep = 'app' | 'image' | 'volume' | 'secret' | 'sandbox' | 'exec' | 'filesystem';

export class ProviderNotFoundError extends NotFoundError {
  constructor(readonly step: ProviderStep, message: string) {
    super(`${step}: ${message}`, { step });
  }
}
export class ProviderInvalidError extends InvalidInputError {
  constructor(readonly step: ProviderStep, message: string) {
    super(`${step}: ${message}`, { step });
  }
}
export class ProviderConflictError extends ConflictError {
  constructor(readonly step: ProviderStep, message: string) {
    super(`${step}: ${message}`, { step });
  }
}
export class ProviderExhaustedError extends UnavailableError {
  constructor(readonly step: ProviderStep, message: string) {
    super(`${step}: ${message}; retry in a few seconds`, { step });
  }
}
export class ProviderUnavailableError extends UnavailableError {
  constructor(readonly step: ProviderStep, message: string) {
    super(`${step}: ${message}`, { step });
  }
}
export class ProviderTimeoutError extends DeadlineExceededError {
  constructor(readonly step: ProviderStep, message: string) {
    super(`${step}: ${message}`, { step });
  }
}
/** An image the engine cannot build or use (e.g. a registry image on the local engine). */
export class UnsupportedImageError extends UnprocessableError {}

/** Why a registry refused or lacks an image: the request's image_base is wrong, not the service. */
export type ImageRefusal = 'not_found' | 'unauthorized' | 'digest_mismatch' | 'not_cached' | 'no_platform';

/** An image_base that is no valid OCI/Docker reference. */
export class InvalidImageReferenceError extends InvalidInputError {
  constructor(readonly image: string, reason: string) {
    super(`image_base: ${image} is not a valid image reference (${reason})`, { step: 'image', field: 'image_base', image });
  }
}
/** A registry image that cannot be had: absent, refused to our credentials, not the digest asked for, or not cached under IMAGE_PULL_POLICY=never. */
export class ImagePullRefusedError extends UnprocessableError {
  constructor(readonly image: string, readonly reason: ImageRefusal, explanation: string) {
    super(`image_base: ${image} ${explanation}`, { step: 'image', field: 'image_base', image, reason });
  }
}
/** The registry could not be reached (network, TLS, outage): worth a retry, not the request's fault. */
export class RegistryUnavailableError extends UnavailableError {
  constructor(readonly image: string, reason: string) {
    super(`image_base: the registry of ${image} is unavailable: ${reason}`, { step: 'image', field: 'image_base', image });
  }
}
/** DELETE /api/images/:digest of an image this engine does not keep. */
export class ImageNotCachedError extends NotFoundError {
  constructor(readonly digest: string) {
    super(`image: ${digest} is not in the image cache`, { step: 'image', digest });
  }
}
/** An image a sandbox runs on (or is being created on) is never removed. */
export class ImageInUseError extends ConflictError {
  constructor(readonly digest: string) {
    super(`image: ${digest} is in use by a sandbox; delete the sandboxes on it first`, { step: 'image', digest });
  }
}
/** A network policy field the engine cannot enforce (e.g. allowed_domains on Modal); refused before anything is created. */
export class UnsupportedNetworkPolicyError extends UnprocessableError {
  constructor(readonly field: string, reason: string) {
    super(`${field}: ${reason}`, { step: 'sandbox', field });
  }
}
/** A Dockerfile step failed while the sandbox was being created. */
export class ImageStepFailedError extends UnprocessableError {
  constructor(readonly stepIndex: number, readonly instruction: string, readonly exitCode: number, readonly outputTail: string) {
    super(`image step ${stepIndex + 1} failed (exit ${exitCode}): ${instruction}`, { step: 'image', step_index: stepIndex, instruction, exit_code: exitCode, output_tail: outputTail });
  }
}
export class SandboxGoneError extends ConflictError {
  constructor(providerSandboxId: string) {
    super(`sandbox: ${providerSandboxId} is no longer running`, { step: 'sandbox' });
  }
}
/** A secret named in a request exists nowhere this engine looks for secrets. */
export class SecretNotFoundError extends InvalidInputError {
  constructor(name: string, wherever: string) {
    super(`secrets: no secret named "${name}" exists (${wherever})`);
  }
}

export class PathOutsideVolumeError extends InvalidInputError {
  constructor(path: string) {
    super(`path leaves the volume: ${path}`, { step: 'filesystem' });
  }
}
export class VolumePathNotFoundError extends NotFoundError {
  constructor(path: string) {
    super(`no such file or directory in the volume: ${path}`, { step: 'filesystem' });
  }
}
export class ProviderFailureError extends UpstreamError {
  constructor(readonly step: ProviderStep, message: string) {
    super(`${step}: ${message}`, { step });
  }
}
