type Credentials = Record<string, string | undefined>;

export const MISSING_CREDENTIALS_MESSAGE =
  'Claude is not configured: set ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN; ' +
  'or CLAUDE_CODE_USE_BEDROCK=1 with AWS_REGION and AWS_BEARER_TOKEN_BEDROCK (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); ' +
  'or CLAUDE_CODE_USE_VERTEX=1 with CLOUD_ML_REGION and ANTHROPIC_VERTEX_PROJECT_ID';

/** Whether model credentials are configured at all. */
export function hasModelCredentials(credentials: Credentials): boolean {
  const anthropic = Boolean(credentials.ANTHROPIC_API_KEY || credentials.ANTHROPIC_AUTH_TOKEN);
  const bedrock =
    isEnabled(credentials.CLAUDE_CODE_USE_BEDROCK) &&
    Boolean(credentials.AWS_REGION) &&
    Boolean(credentials.AWS_BEARER_TOKEN_BEDROCK || (credentials.AWS_ACCESS_KEY_ID && credentials.AWS_SECRET_ACCESS_KEY));
  const vertex = isEnabled(credentials.CLAUDE_CODE_USE_VERTEX) && Boolean(credentials.CLOUD_ML_REGION && credentials.ANTHROPIC_VERTEX_PROJECT_ID);
  return anthropic || bedrock || vertex;
}

/**
 * Whether the credentials can be used through the model gateway (an Anthropic API key or token);
 * Bedrock and Vertex credentials are still injected into the Claude process.
 */
export function servedByModelGateway(credentials: Credentials): boolean {
  const cloud = isEnabled(credentials.CLAUDE_CODE_USE_BEDROCK) || isEnabled(credentials.CLAUDE_CODE_USE_VERTEX);
  return !cloud && Boolean(credentials.ANTHROPIC_API_KEY || credentials.ANTHROPIC_AUTH_TOKEN);
}

function isEnabled(flag: string | undefined): boolean {
  return flag === '1' || flag === 'true';
}
