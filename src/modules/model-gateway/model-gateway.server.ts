import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, Server } from 'node:http';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { AppConfig } from '../../config/app-config';
import { ModelGatewayEndpoint } from '../../integrations/sandbox/model-gateway-endpoint';
import { ModelGatewayHandler } from './model-gateway.handler';

/** Sandboxes will be allowed to reach exactly this address, so it serves the gateway and nothing else. */
const LOOPBACK = '127.0.0.1';
const RETRY_LISTEN_MS = 1_000;

/**
 * The gateway's own HTTP server on the host's loopback (MODEL_GATEWAY_PORT, 0 = a free port, the
 * same across restarts). It listens before the app serves requests, so that no run can start
 * before its port is known. Agents outlive the service with the gateway's URL in their
 * environment, and sandboxes' egress filters open that port: a restarted service listens on it
 * again (remembered under DATA_DIR), or they could not reach the model any more. Instances sharing
 * a DATA_DIR share the port: one serves it, the others take it over when it is free.
 */
@Injectable()
export class ModelGatewayServer implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('ModelGateway');
  private readonly server: Server;
  private retryTimer?: NodeJS.Timeout;

  constructor(
    handler: ModelGatewayHandler,
    private readonly endpoint: ModelGatewayEndpoint,
    private readonly config: AppConfig,
  ) {
    this.server = createServer({ noDelay: true }, handler.handle);
  }

  async onModuleInit(): Promise<void> {
    const configured = this.config.modelGateway.port;
    const remembered = configured === 0 ? await this.rememberedPort() : undefined;
    const port = configured || remembered;
    if (port === undefined) {
      await this.listen(0);
      this.endpoint.port = (this.server.address() as AddressInfo).port;
      await writeFile(this.portFile, `${this.endpoint.port}\n`);
    } else {
      // Agents and egress filters know this port: it is served by whichever instance on this host holds it.
      this.endpoint.port = port;
      if (!(await this.tryListen(port))) this.retryListening(port);
    }
    if (this.server.listening) this.logger.log({ port: this.endpoint.port }, `model gateway listening on ${LOOPBACK}:${this.endpoint.port}`);
  }

  /**
   * The port is held by another instance sharing this DATA_DIR (or a process that has not let go
   * of it yet): this one takes it over as soon as it is free, e.g. when that instance stops or dies.
   */
  private retryListening(port: number): void {
    this.logger.warn({ port }, `model gateway port ${port} is held by another process (another instance on this host?); serving it once it is free`);
    this.retryTimer = setInterval(() => {
      void this.tryListen(port).then((listening) => {
        if (!listening) return;
        clearInterval(this.retryTimer);
        this.logger.log({ port }, `model gateway listening on ${LOOPBACK}:${port}`);
      });
    }, RETRY_LISTEN_MS).unref();
  }

  private async tryListen(port: number): Promise<boolean> {
    try {
      await this.listen(port);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
      return false;
    }
  }

  private listen(port: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, LOOPBACK, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
  }

  private get portFile(): string {
    return join(this.config.dataDir, 'model-gateway.port');
  }

  private async rememberedPort(): Promise<number | undefined> {
    const port = Number((await readFile(this.portFile, 'utf8').catch(() => '')).trim());
    return Number.isInteger(port) && port > 0 && port < 65536 ? port : undefined;
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.retryTimer);
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
    this.endpoint.port = null;
  }
}
