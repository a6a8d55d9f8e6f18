import { hasModelCredentials, MISSING_CREDENTIALS_MESSAGE, servedByModelGateway } from './claude.credentials';

describe('model credentials', () => {
  describe('hasModelCredentials', () => {
    it.each([
      ['an API key', { ANTHROPIC_API_KEY: 'sk-ant-x' }],
      ['an auth token', { ANTHROPIC_AUTH_TOKEN: 'tok' }],
      ['Bedrock with a bearer token', { CLAUDE_CODE_USE_BEDROCK: '1', AWS_REGION: 'us-east-1', AWS_BEARER_TOKEN_BEDROCK: 'b' }],
      ['Bedrock with AWS keys', { CLAUDE_CODE_USE_BEDROCK: 'true', AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 's' }],
      ['Vertex', { CLAUDE_CODE_USE_VERTEX: '1', CLOUD_ML_REGION: 'us-east5', ANTHROPIC_VERTEX_PROJECT_ID: 'p' }],
    ])('is true with %s', (_name, env) => {
      expect(hasModelCredentials(env)).toBe(true);
    });

    it.each([
      ['nothing', {}],
      ['only a base URL', { ANTHROPIC_BASE_URL: 'http://127.0.0.1:1' }],
      ['Bedrock switched off', { CLAUDE_CODE_USE_BEDROCK: '0', AWS_REGION: 'us-east-1', AWS_BEARER_TOKEN_BEDROCK: 'b' }],
      ['Bedrock without a region', { CLAUDE_CODE_USE_BEDROCK: '1', AWS_BEARER_TOKEN_BEDROCK: 'b' }],
      ['Bedrock without credentials', { CLAUDE_CODE_USE_BEDROCK: '1', AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'a' }],
      ['Vertex without a project', { CLAUDE_CODE_USE_VERTEX: '1', CLOUD_ML_REGION: 'us-east5' }],
    ])('is false with %s', (_name, env) => {
      expect(hasModelCredentials(env)).toBe(false);
    });
  });

  it('names the variables to set, without any value', () => {
    for (const variable of ['ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'CLAUDE_CODE_USE_BEDROCK', 'CLAUDE_CODE_USE_VERTEX']) {
      expect(MISSING_CREDENTIALS_MESSAGE).toContain(variable);
    }
  });

  describe('servedByModelGateway', () => {
    it.each([
      [{ ANTHROPIC_API_KEY: 'k' }, true],
      [{ ANTHROPIC_AUTH_TOKEN: 't' }, true],
      [{ CLAUDE_CODE_USE_BEDROCK: '1', AWS_REGION: 'us-east-1', AWS_BEARER_TOKEN_BEDROCK: 'b', ANTHROPIC_API_KEY: 'k' }, false],
      [{ CLAUDE_CODE_USE_VERTEX: '1', CLOUD_ML_REGION: 'us-east5', ANTHROPIC_VERTEX_PROJECT_ID: 'p' }, false],
      [{}, false],
    ])('%j → %s', (credentials, expected) => {
      expect(servedByModelGateway(credentials as Record<string, string>)).toBe(expected);
    });
  });
});
