import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { createHash, randomBytes } from 'node:crypto';
import { In, IsNull, Repository } from 'typeorm';
import { ACTIVE_RUN_STATUSES } from './run-state';
import { ModelGatewayToken } from './model-gateway-token.entity';

/** Recognizable in a leaked log or environment dump, and never mistaken for an Anthropic key. */
export const RUN_TOKEN_PREFIX = 'mgw_';
const TOKEN_BYTES = 32;
const TOKEN_PATTERN = /^mgw_[A-Za-z0-9_-]{43}$/;

/** What the gateway counted for a run, as the run's API response shows it. */
export interface ModelUsage {
  requests: number;
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

export const NO_USAGE: ModelUsage = { requests: 0, input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };

/** Per-run credentials of the model gateway: valid from issue() until revoke(). */
@Injectable()
export class ModelGatewayTokens {
  constructor(@InjectRepository(ModelGatewayToken) private readonly tokens: Repository<ModelGatewayToken>) {}

  /** A fresh token for the run; only its hash is stored, the value exists only in the returned string. */
  async issue(runId: string): Promise<string> {
    const token = RUN_TOKEN_PREFIX + randomBytes(TOKEN_BYTES).toString('base64url');
    await this.tokens.insert({ runId, tokenHash: hashOf(token) });
    return token;
  }

  /** Idempotent; a run without a token is left as it is. */
  async revoke(runId: string): Promise<void> {
    await this.tokens.update({ runId, revokedAt: IsNull() }, { revokedAt: new Date() });
  }

  /** At boot: tokens of runs that are no longer queued or running stop working. */
  async revokeEndedRuns(): Promise<void> {
    await this.tokens.query(
      `UPDATE model_gateway_token SET revoked_at = now()
        WHERE revoked_at IS NULL AND run_id IN (SELECT id FROM run WHERE status <> ALL($1))`,
      [ACTIVE_RUN_STATUSES],
    );
  }

  /** The run a token belongs to, or null when it is unknown, malformed or revoked. */
  async resolve(token: string): Promise<string | null> {
    if (!TOKEN_PATTERN.test(token)) return null;
    const row = await this.tokens.findOne({ select: { runId: true }, where: { tokenHash: hashOf(token), revokedAt: IsNull() } });
    return row?.runId ?? null;
  }

  /** One atomic increment, so concurrent requests of a run (and several instances) never lose counts. */
  async addUsage(runId: string, usage: ModelUsage): Promise<void> {
    await this.tokens
      .createQueryBuilder()
      .update()
      .set({
        requests: () => 'requests + :requests',
        inputTokens: () => 'input_tokens + :input_tokens',
        outputTokens: () => 'output_tokens + :output_tokens',
        cacheCreationInputTokens: () => 'cache_creation_input_tokens + :cache_creation_input_tokens',
        cacheReadInputTokens: () => 'cache_read_input_tokens + :cache_read_input_tokens',
      })
      .where('run_id = :runId', { runId })
      .setParameters({ ...usage })
      .execute();
  }

  /** Usage recorded for each of the runs that had a gateway token. */
  async usageOf(runIds: string[]): Promise<Map<string, ModelUsage>> {
    if (runIds.length === 0) return new Map();
    const rows = await this.tokens.find({ where: { runId: In(runIds) } });
    return new Map(rows.map((row) => [row.runId, usageOfRow(row)]));
  }
}

function usageOfRow(row: ModelGatewayToken): ModelUsage {
  return {
    requests: row.requests,
    input_tokens: row.inputTokens,
    output_tokens: row.outputTokens,
    cache_creation_input_tokens: row.cacheCreationInputTokens,
    cache_read_input_tokens: row.cacheReadInputTokens,
  };
}

export function hashOf(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
