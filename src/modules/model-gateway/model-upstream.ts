import { AppConfig } from '../../config/app-config';

const ANTHROPIC_API_URL = 'https://api.anthropic.com';

/** Where the gateway forwards to and the operator's credential it adds; only the service holds it. */
export interface ModelUpstream {
  baseUrl: URL;
  authHeader: { name: 'x-api-key' | 'authorization'; value: string };
}

/** The configured Anthropic endpoint and credential, or null when only Bedrock/Vertex (or nothing) is configured. */
export function modelUpstreamOf(config: AppConfig): ModelUpstream | null {
  const credentials = config.claude.credentials;
  const baseUrl = new URL(credentials.ANTHROPIC_BASE_URL ?? ANTHROPIC_API_URL);
  if (credentials.ANTHROPIC_API_KEY) return { baseUrl, authHeader: { name: 'x-api-key', value: credentials.ANTHROPIC_API_KEY } };
  if (credentials.ANTHROPIC_AUTH_TOKEN) return { baseUrl, authHeader: { name: 'authorization', value: `Bearer ${credentials.ANTHROPIC_AUTH_TOKEN}` } };
  return null;
}
