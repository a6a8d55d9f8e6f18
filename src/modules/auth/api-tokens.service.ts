import { Injectable, Logger } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { createHash, randomBytes } from 'node:crypto';
import { Repository } from 'typeorm';
import { ApiToken } from './api-token.entity';
import { ApiTokenNotFoundError } from './auth.errors';

export const API_TOKEN_MARKER = 'mss_';
const PREFIX_LENGTH = API_TOKEN_MARKER.length + 8;
const LAST_USED_RESOLUTION_MS = 60_000;

export const hashApiToken = (token: string) => createHash('sha256').update(token).digest('hex');

@Injectable()
export class ApiTokensService {
  private readonly logger = new Logger(ApiTokensService.name);

  constructor(@InjectRepository(ApiToken) private readonly tokens: Repository<ApiToken>) {}

  /** Returns the stored row and the token value, which exists only in this answer. */
  async issue(userId: string, name: string, expiresInDays?: number): Promise<{ record: ApiToken; token: string }> {
    const token = API_TOKEN_MARKER + randomBytes(32).toString('base64url');
    const expiresAt = expiresInDays ? new Date(Date.now() + expiresInDays * 86_400_000) : null;
    const record = await this.tokens.save(
      this.tokens.create({ userId, name, prefix: token.slice(0, PREFIX_LENGTH), tokenHash: hashApiToken(token), expiresAt, lastUsedAt: null }),
    );
    this.logger.log({ api_token_id: record.id, user_id: userId }, 'api token created');
    return { record, token };
  }

  listForUser(userId: string): Promise<ApiToken[]> {
    return this.tokens.find({ where: { userId }, order: { createdAt: 'DESC' } });
  }

  async revoke(userId: string, id: string): Promise<void> {
    const result = await this.tokens.delete({ id, userId });
    if (!result.affected) throw new ApiTokenNotFoundError();
    this.logger.log({ api_token_id: id, user_id: userId }, 'api token revoked');
  }

  /** The live token matching this value, or null; records its use at most once a minute. */
  async findUsable(token: string): Promise<ApiToken | null> {
    const record = await this.tokens.findOneBy({ tokenHash: hashApiToken(token) });
    if (!record || (record.expiresAt && record.expiresAt.getTime() <= Date.now())) return null;
    if (!record.lastUsedAt || Date.now() - record.lastUsedAt.getTime() > LAST_USED_RESOLUTION_MS) {
      record.lastUsedAt = new Date();
      await this.tokens.update({ id: record.id }, { lastUsedAt: record.lastUsedAt });
    }
    return record;
  }
}
