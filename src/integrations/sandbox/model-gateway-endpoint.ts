/**
 * Where the service's model gateway listens on the host's loopback, once it listens. The gateway
 * sets it; the local engine reads it to let its sandboxes (and nothing else on their network) reach it.
 */
export class ModelGatewayEndpoint {
  port: number | null = null;
}
