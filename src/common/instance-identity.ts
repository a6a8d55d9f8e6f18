import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';

/**
 * Which instance of the service this process is, among those sharing one database: it owns the
 * runs it follows under this id (RunLeases). INSTANCE_ID when set, which an operator keeps stable
 * across restarts so that a restarted instance takes its runs back at once (otherwise they are
 * taken over when their leases run out); else generated at each start.
 */
@Injectable()
export class InstanceIdentity {
  readonly id: string;

  constructor(config: AppConfig) {
    this.id = config.instanceId;
  }
}
