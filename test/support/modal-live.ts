/**
 * When the live-Modal suites (test/modal-live*.e2e-spec.ts) run, and why not.
 *
 * They run only with MODAL_TOKEN_ID and MODAL_TOKEN_SECRET set. Without them they are reported as
 * skipped (`describe.skip`, the reason in the suite's name) instead of a test that passes while
 * proving nothing.
 *
 * They target real Modal only. The modal SDK reads MODAL_SERVER_URL from the process environment on
 * its own, and these suites run the SDK in the Jest process, so a MODAL_SERVER_URL left exported for
 * the fake control plane (../shared/fake-modal, which accepts any token, e.g. ak-test) would make the
 * "live" suites pass against the fake and claim a real-Modal result they never measured. The fake has
 * its own suites (*.fake-modal.e2e-spec.ts). So a MODAL_SERVER_URL that is not Modal's own API host
 * (*.modal.com) skips them, with that reason; unset it to run them. (A `server_url` in the
 * ~/.modal.toml profile is not checked: the SDK uses it too, keep it pointed at Modal.)
 */
export interface ModalLiveEnvironment {
  /** The environment to hand the provider / the service: tokens and, when set, MODAL_ENVIRONMENT. */
  env?: { MODAL_TOKEN_ID: string; MODAL_TOKEN_SECRET: string; MODAL_ENVIRONMENT?: string };
  /** Why the suite is skipped; undefined when it runs. */
  skipReason?: string;
}

export function modalLiveEnvironment(source: NodeJS.ProcessEnv = process.env): ModalLiveEnvironment {
  const { MODAL_TOKEN_ID: tokenId, MODAL_TOKEN_SECRET: tokenSecret, MODAL_ENVIRONMENT: environment, MODAL_SERVER_URL: serverUrl } = source;
  if (!tokenId || !tokenSecret) return { skipReason: 'set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET to run against real Modal' };
  if (serverUrl && !isModalHost(serverUrl)) {
    return { skipReason: `MODAL_SERVER_URL=${serverUrl} is not real Modal; this suite targets real Modal only, unset MODAL_SERVER_URL to run it` };
  }
  return { env: { MODAL_TOKEN_ID: tokenId, MODAL_TOKEN_SECRET: tokenSecret, ...(environment ? { MODAL_ENVIRONMENT: environment } : {}) } };
}

function isModalHost(serverUrl: string): boolean {
  try {
    const { hostname } = new URL(serverUrl);
    return hostname === 'modal.com' || hostname.endsWith('.modal.com');
  } catch {
    return false;
  }
}

/** The suite's title: the name, plus the reason when it is skipped. */
export function liveSuiteName(name: string, live: ModalLiveEnvironment): string {
  return live.skipReason ? `${name} (skipped: ${live.skipReason})` : name;
}
