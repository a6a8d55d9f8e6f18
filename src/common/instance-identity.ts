import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Injectable } from '@nestjs/common';
import { AppConfig } from '../config/app-config';

/**
 * Which instance of the service this process is, among those sharing one database: it owns the
 * runs it follows under this id (RunLeases). Unique per process.
 */
@Injectable()
export class InstanceIdentity {
  readonly id: string;

  constructor(_config: AppConfig) {
    this.id = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  }
}
