/** Minimal JSON-over-HTTP client for e2e tests: real requests against the booted app. */
export interface HttpResult<T = any> {
  status: number;
  body: T;
  headers: Headers;
  text: string;
}

/** `timeoutMs`: the request fails (AbortError) when no complete answer came by then. */
export async function call<T = any>(url: string, method: string, path: string, options: { token?: string; body?: unknown; rawBody?: string | Buffer; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<HttpResult<T>> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | Buffer | undefined;
  if (options.rawBody !== undefined) {
    body = options.rawBody;
    headers['content-type'] ??= 'application/json';
  } else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] = 'application/json';
  }
  const signal = options.timeoutMs === undefined ? undefined : AbortSignal.timeout(options.timeoutMs);
  const response = await fetch(`${url}${path}`, { method, headers, body, signal });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // non-JSON answers (files, HTML) stay as text
  }
  return { status: response.status, body: parsed as T, headers: response.headers, text };
}

export const api = (url: string, token?: string) => ({
  get: <T = any>(path: string, headers?: Record<string, string>) => call<T>(url, 'GET', path, { token, headers }),
  post: <T = any>(path: string, body?: unknown) => call<T>(url, 'POST', path, { token, body }),
  put: <T = any>(path: string, body?: unknown) => call<T>(url, 'PUT', path, { token, body }),
  delete: <T = any>(path: string) => call<T>(url, 'DELETE', path, { token }),
});
