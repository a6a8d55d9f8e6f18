import {
  type App,
  type AppFromNameParams,
  type CloudBucketMount,
  type FileInfo,
  ModalClient,
  type SandboxCreateParams,
  type SandboxExecParams,
  type SandboxListParams,
  type Secret,
  type Volume,
  type VolumeFromNameParams,
} from 'modal';
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
    list(params: SandboxListParams): AsyncIterable<ModalSandboxLike>;
  };
  close?(): void;
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
  poll(): Promise<number | null>;
  terminate(): Promise<void>;
  detach(): void;
}

export interface ModalProcessLike {
  /** Each write is one RPC; close() sends EOF. Optional so stand-ins without input need not fake it. */
  readonly stdin?: WritableStream<Uint8Array>;
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

export function createModalClient(config: AppConfig): ModalClientLike {
  const client: ModalClientLike = new ModalClient({
    tokenId: config.modal.tokenId,
    tokenSecret: config.modal.tokenSecret,
    environment: config.modal.environment,
  });
  return client;
}
