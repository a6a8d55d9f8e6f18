import {
  type App,
  type AppFromNameParams,
  type CloudBucketMount,
  type FileInfo,
  type Logger as ModalLogger,
  ModalClient,
  type SandboxCreateParams,
  type SandboxExecParams,
  type Secret,
  type SandboxExperimentalListParams,
  type Volume,
  type VolumeFromNameParams,
} from 'modal';
import type { Logger } from '@nestjs/common';
import type { AppConfig } from '../../../config/app-config';

/**
 * The part of the Modal SDK (modal@0.11.1) this service uses, as plain structural types so unit
 * tests can stand in a strict fake. The real ModalClient satisfies it (checked in createModalClient).
 */
export interface ModalClientLike {
  apps: { fromName(name: string, params?: AppFromNameParams): Promise<App> };
  images: { fromRegistry(tag: string): ModalImageLike };
  volumes: { fromName(name: string, params?: VolumeFromNameParams): Promise<Volume> };
  secrets: {
    fromName(name: string): Promise<Secret>;
    fromObject(entries: Record<string, string>): Promise<Secret>;
  };
  cloudBucketMounts: {
    create(bucketName: string, params: { secret?: Secret; readOnly?: boolean; keyPrefix?: string; bucketEndpointUrl?: string }): CloudBucketMount;
  };
  sandboxes: {
    create(app: App, image: ModalImageLike, params: SandboxCreateParams): Promise<ModalSandboxLike>;
    fromId(sandboxId: string): Promise<ModalSandboxLike>;
    experimentalList(params: SandboxExperimentalListParams): AsyncIterable<ModalSandboxLike>;
  };
  /** The control plane's own calls, for what the SDK's objects do not expose (how a sandbox ended). */
  cpClient: ModalControlPlaneLike;
  close?(): void;
}

/** A finished sandbox's result as the control plane reports it (GenericResult). */
export interface ModalSandboxResult {
  status: number;
  exitcode: number;
}

export interface ModalControlPlaneLike {
  sandboxWait(request: { sandboxId: string; timeout: number }): Promise<{ result?: ModalSandboxResult | undefined }>;
  sandboxWaitV2(request: { sandboxId: string; timeout: number }): Promise<{ result?: ModalSandboxResult | undefined }>;
}

export interface ModalImageLike {
  readonly imageId: string;
  dockerfileCommands(commands: string[]): ModalImageLike;
  build(app: App): Promise<ModalImageLike>;
}

export interface ModalSandboxLike {
  readonly sandboxId: string;
  readonly filesystem: ModalFilesystemLike;
  /** Always called in binary mode: output bytes are passed on untouched, never decoded. */
  exec(command: string[], params: SandboxExecParams & { mode: 'binary' }): Promise<ModalProcessLike>;
  terminate(): Promise<void>;
  detach(): void;
}

export interface ModalProcessLike {
  /** Closed right after the start: nothing we run reads input we do not send. */
  readonly stdin: WritableStream<Uint8Array>;
  readonly stdout: ReadableStream<Uint8Array>;
  readonly stderr: ReadableStream<Uint8Array>;
  wait(): Promise<number>;
}

export interface ModalFilesystemLike {
  listFiles(remotePath: string): Promise<FileInfo[]>;
  stat(remotePath: string): Promise<FileInfo>;
  copyFromLocal(localPath: string, remotePath: string): Promise<void>;
}

export function isModalConfigured(config: AppConfig): boolean {
  return Boolean(config.modal.tokenId && config.modal.tokenSecret);
}

/** Start-up check when SANDBOX_PROVIDER=modal: refuse to boot without credentials. */
export function assertModalConfigured(config: AppConfig): void {
  if (!isModalConfigured(config)) {
    throw new Error('SANDBOX_PROVIDER=modal needs MODAL_TOKEN_ID and MODAL_TOKEN_SECRET (create a token with `modal token new`)');
  }
}

/**
 * The SDK's own log lines go through ours (structured, with the instance id) instead of its plain
 * console output; its debug level logs every RPC, so it speaks at warn unless we log errors only.
 */
export function createModalClient(config: AppConfig, logger: Logger): ModalClientLike {
  const client: ModalClientLike = new ModalClient({
    tokenId: config.modal.tokenId,
    tokenSecret: config.modal.tokenSecret,
    environment: config.modal.environment,
    logger: sdkLogger(logger),
    logLevel: config.logLevel === 'error' ? 'error' : 'warn',
  });
  return client;
}

/** The SDK logs a message followed by key, value pairs: they become fields of one structured line. */
export function sdkLogger(logger: Logger): ModalLogger {
  const line = (message: string, pairs: unknown[]) => {
    const fields: Record<string, unknown> = { source: 'modal-sdk' };
    for (let index = 0; index + 1 < pairs.length; index += 2) fields[String(pairs[index])] = pairs[index + 1];
    return [fields, message] as const;
  };
  return {
    debug: (message, ...pairs) => logger.debug(...line(message, pairs)),
    info: (message, ...pairs) => logger.log(...line(message, pairs)),
    warn: (message, ...pairs) => logger.warn(...line(message, pairs)),
    error: (message, ...pairs) => logger.error(...line(message, pairs)),
  };
}
