import { posix } from 'node:path';
import { type DockerfileStep, expandEnvReferences } from '../dockerfile';
import type { SandboxSpec, SandboxState } from '../sandbox-provider';
import type { ImageConfig } from './oci-image-config';
import { CLAUDE_DIR_IN_SANDBOX, DEFAULT_SANDBOX_ENV } from './sandbox-commands';

/** The environment of a sandbox's processes and where they start. */
export interface ProcessDefaults {
  env: Record<string, string>;
  workdir: string;
}

/**
 * Where the Dockerfile lines start: the image's ENV over the engine's defaults (its PATH keeps the
 * Claude CLI's directory first) and its WORKDIR, or `/`.
 */
export function initialImageDefaults(image?: ImageConfig): ProcessDefaults {
  const env = { ...DEFAULT_SANDBOX_ENV, ...image?.env };
  if (image?.env.PATH !== undefined) env.PATH = `${CLAUDE_DIR_IN_SANDBOX}:${image.env.PATH}`;
  return { env, workdir: image?.workdir ? posix.resolve('/', image.workdir) : '/' };
}

/** ENV sets (expanding `$NAME` from what is set so far), WORKDIR moves relative to the last one. */
export function applyConfigStep(current: ProcessDefaults, step: DockerfileStep): void {
  if (step.kind === 'env') for (const [name, value] of step.variables) current.env[name] = expandEnvReferences(value, current.env);
  if (step.kind === 'workdir') current.workdir = posix.resolve(current.workdir, step.path);
}

/** The environment (defaults plus ENV lines) and, when a WORKDIR line sets one, the workdir of the image. */
export function imageDefaultsOf(steps: DockerfileStep[], image?: ImageConfig): Partial<ProcessDefaults> {
  const current = initialImageDefaults(image);
  steps.forEach((step) => applyConfigStep(current, step));
  return { env: current.env, ...(steps.some((step) => step.kind === 'workdir') ? { workdir: current.workdir } : {}) };
}

/** The image's environment under the sandbox's env and secret values; an image WORKDIR replaces the spec's workdir. */
export function sandboxDefaults(spec: SandboxSpec, image: Partial<ProcessDefaults>): ProcessDefaults {
  return { env: { ...image.env, ...spec.env, ...secretValues(spec) }, workdir: image.workdir ?? spec.workdir };
}

export function secretValues(spec: SandboxSpec): Record<string, string> {
  return Object.assign({}, ...spec.secrets.map((secret) => secret.values)) as Record<string, string>;
}

/** How a sandbox ended, from its launcher's exit: by itself (its init exited) unless stopped first. */
export function exitedState(exitCode: number): SandboxState {
  return { status: 'terminated', exitReason: 'exited', exitCode };
}
