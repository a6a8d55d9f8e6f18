import { Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { AppConfig } from '../../config/app-config';
import { UsersService } from './users.service';

/** Creates the first admin from ADMIN_EMAIL / ADMIN_PASSWORD when the service has no user yet. */
@Injectable()
export class AdminBootstrapService implements OnApplicationBootstrap {
  private readonly logger = new Logger(AdminBootstrapService.name);

  constructor(
    private readonly config: AppConfig,
    private readonly users: UsersService,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    if ((await this.users.count()) > 0) return;
    const { adminEmail, adminPassword } = this.config.auth;
    if (!adminEmail || !adminPassword) {
      this.logger.warn('No user exists yet. Set ADMIN_EMAIL and ADMIN_PASSWORD (8+ characters) and restart to create the first admin.');
      return;
    }
    const admin = await this.users.create({ email: adminEmail, password: adminPassword, role: 'admin' });
    this.logger.log({ user_id: admin.id, account_id: admin.accountId }, 'bootstrap admin created');
  }
}
