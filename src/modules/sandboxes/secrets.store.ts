import { Injectable, Logger } from '@nestjs/common';
import { readFileSync } from 'node:fs';
import { AppConfig } from '../../config/app-config';
import type { SecretRef } from '../../integrations/sandbox/sandbox-provider';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Named secrets defined by the operator in SECRETS_FILE (`{"name": {"ENV_VAR": "value"}}`).
 * Users refer to them by name; their values go only into sandbox environments. On Modal a name
 * may instead be a Modal Secret of the workspace (the engine checks).
 */
@Injectable()
export class SecretsStore {
  private readonly logger = new Logger(SecretsStore.name);
  private readonly secrets: Map<string, Record<string, string>>;

  constructor(config: AppConfig) {
    this.secrets = config.sandbox.secretsFile ? loadSecretsFile(config.sandbox.secretsFile) : new Map();
    this.logger.log({ secrets: [...this.secrets.keys()] }, 'named secrets loaded');
  }

  /** Each name with its values when SECRETS_FILE defines it; whether the engine can supply the others is its call. */
  resolve(names: string[]): SecretRef[] {
    return names.map((name) => {
      const values = this.secrets.get(name);
      return values ? { name, values } : { name };
    });
  }
}

function loadSecretsFile(path: string): Map<string, Record<string, string>> {
  const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error(`SECRETS_FILE ${path} must hold a JSON object of named secrets`);
  return new Map(
    Object.entries(parsed as Record<string, unknown>).map(([name, values]) => {
      const valid = values && typeof values === 'object' && Object.entries(values).every(([key, value]) => ENV_NAME.test(key) && typeof value === 'string');
      if (!valid) throw new Error(`SECRETS_FILE: secret "${name}" must map environment variable names to string values`);
      return [name, values as Record<string, string>];
    }),
  );
}
