/** An error answer of the API: `{ statusCode, error, message, request_id? }`. */
export class ApiError extends Error {
  constructor(status, messages, requestId) {
    super(messages.join('\n') || `Request failed with status ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.messages = messages;
    this.requestId = requestId;
  }
}

/** The request never got an answer (offline, server down, connection cut). */
export class NetworkError extends Error {
  constructor(cause) {
    super('Network request failed', { cause });
    this.name = 'NetworkError';
  }
}

const GENERIC_MESSAGES = {
  401: 'Your session has expired. Please sign in again.',
  403: 'You are not allowed to do that.',
  404: 'It no longer exists.',
  413: 'That is larger than the server accepts.',
  429: 'Too many requests. Wait a moment and try again.',
  502: 'An upstream service failed. Try again in a moment.',
  503: 'The service is temporarily unavailable. Try again in a moment.',
  504: 'The server took too long to answer. Try again in a moment.',
};

/**
 * Words a user understands for any failure. `overrides` maps a status to a message for the
 * situation at hand; otherwise the API's own message (written for people) is used.
 */
export function describeError(error, overrides = {}) {
  if (error instanceof NetworkError) return "Can't reach the server. Check your connection and try again.";
  if (!(error instanceof ApiError)) return error?.message || 'Something went wrong.';
  if (overrides[error.status]) return overrides[error.status];
  if (error.status >= 500 && !GENERIC_MESSAGES[error.status]) {
    return `Something went wrong on the server.${error.requestId ? ` (Reference: ${error.requestId})` : ''}`;
  }
  if (error.messages.length > 0 && error.status !== 401) return error.messages.join(' ');
  return GENERIC_MESSAGES[error.status] ?? `The request failed (HTTP ${error.status}).`;
}

/** Thin client of the REST API; every method resolves to the `data` of the answer. */
export class ApiClient {
  constructor({ getToken, onUnauthorized }) {
    this.getToken = getToken;
    this.onUnauthorized = onUnauthorized;
  }

  authHeaders() {
    const token = this.getToken();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  async fetch(method, path, { query, json, body, headers = {}, signal, anonymous = false } = {}) {
    const url = withQuery(path, query);
    const init = { method, signal, headers: { Accept: 'application/json', ...(anonymous ? {} : this.authHeaders()), ...headers } };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers['Content-Type'] = 'application/json';
    } else if (body !== undefined) {
      init.body = body;
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      if (error?.name === 'AbortError') throw error;
      throw new NetworkError(error);
    }
    if (!response.ok) {
      const apiError = await readApiError(response);
      if (apiError.status === 401 && !anonymous) this.onUnauthorized?.(apiError);
      throw apiError;
    }
    return response;
  }

  async json(method, path, options) {
    const response = await this.fetch(method, path, options);
    return response.status === 204 ? null : response.json();
  }

  async data(method, path, options) {
    return (await this.json(method, path, options))?.data;
  }

  login(email, password) {
    return this.data('POST', '/api/auth/login', { json: { email, password }, anonymous: true });
  }

  me() {
    return this.data('GET', '/api/auth/me');
  }

  /** Resolves to `{ data: Sandbox[], next_cursor }`, newest first. */
  listSandboxes({ status, limit, cursor } = {}) {
    return this.json('GET', '/api/sandboxes', { query: { status, limit, cursor } });
  }

  createSandbox(spec) {
    return this.data('POST', '/api/sandboxes', { json: spec });
  }

  getSandbox(sandboxId) {
    return this.data('GET', `/api/sandboxes/${encodeURIComponent(sandboxId)}`);
  }

  terminateSandbox(sandboxId, { sync, force }) {
    return this.data('DELETE', `/api/sandboxes/${encodeURIComponent(sandboxId)}`, { query: { sync, force } });
  }

  startRun(sandboxId, request) {
    return this.data('POST', `${sandboxPath(sandboxId)}/runs`, { json: request });
  }

  listRuns(sandboxId) {
    return this.data('GET', `${sandboxPath(sandboxId)}/runs`);
  }

  cancelRun(sandboxId, runId) {
    return this.data('POST', `${runPath(sandboxId, runId)}/cancel`);
  }

  runEventsUrl(sandboxId, runId) {
    return `${runPath(sandboxId, runId)}/events`;
  }

  listFiles(sandboxId, path) {
    return this.data('GET', `${sandboxPath(sandboxId)}/files`, { query: { path } });
  }

  async downloadFile(sandboxId, path) {
    const response = await this.fetch('GET', `${sandboxPath(sandboxId)}/files/content`, { query: { path }, headers: { Accept: '*/*' } });
    return response.blob();
  }

  uploadFile(sandboxId, path, file) {
    return this.data('PUT', `${sandboxPath(sandboxId)}/files/content`, {
      query: { path },
      body: file,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
  }

  listSnapshots(sandboxId) {
    return this.data('GET', `${sandboxPath(sandboxId)}/snapshots`);
  }

  createSnapshot(sandboxId) {
    return this.data('POST', `${sandboxPath(sandboxId)}/snapshots`);
  }
}

function sandboxPath(sandboxId) {
  return `/api/sandboxes/${encodeURIComponent(sandboxId)}`;
}

function runPath(sandboxId, runId) {
  return `${sandboxPath(sandboxId)}/runs/${encodeURIComponent(runId)}`;
}

function withQuery(path, query = {}) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
  }
  const search = params.toString();
  return search ? `${path}?${search}` : path;
}

/** Reads an error answer; shared with the event stream, which also talks to the API. */
export async function readApiError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's error page): the status alone has to do.
  }
  const message = body?.message;
  const messages = Array.isArray(message) ? message.map(String) : message ? [String(message)] : [];
  return new ApiError(response.status, messages, body?.request_id);
}
