import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { createServer, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AppConfig } from '../../config/app-config';
import { ModelGatewayEndpoint } from '../../integrations/sandbox/model-gateway-endpoint';
import { ModelGatewayHandler } from './model-gateway.handler';

/** Sandboxes will be allowed to reach exactly this address, so it serves the gateway and nothing else. */
const LOOPBACK = '127.0.0.1';

/**
 * The gateway's own HTTP server on the host's loopback (MODEL_GATEWAY_PORT, 0 = any free port).
 * It listens before the app serves requests, so that no run can start before its port is known.
 */
@Injectable()
export class ModelGatewayServer implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('ModelGateway');
  private readonly server: Server;

  constructor(
    handler: ModelGatewayHandler,
    private readonly endpoint: ModelGatewayEndpoint,
    private readonly config: AppConfig,
  ) {
    this.server = createServer({ noDelay: true }, handler.handle);
  }

  async onModuleInit(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.config.modelGateway.port, LOOPBACK, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.endpoint.port = (this.server.address() as AddressInfo).port;
    this.logger.log({ port: this.endpoint.port }, `model gateway listening on ${LOOPBACK}:${this.endpoint.port}`);
  }

  async onApplicationShutdown(): Promise<void> {
    if (!this.server.listening) return;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
    this.endpoint.port = null;
  }
}
