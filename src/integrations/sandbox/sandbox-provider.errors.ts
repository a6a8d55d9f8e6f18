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
