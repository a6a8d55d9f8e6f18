import type { SandboxNetwork, SandboxNetworkMode } from '../../integrations/sandbox/sandbox-provider';
import { blockedRangeContaining, formatCidr, parseCidr, parseDomainPattern } from '../../integrations/sandbox/local/egress-rules';
import type { SandboxConfig } from './sandbox.entity';
import { SandboxFieldError } from './sandboxes.errors';

export const NETWORK_MODES = ['none', 'internet', 'allowlist'] as const satisfies readonly SandboxNetworkMode[];
/** Accepted on input; `open` is the deprecated name of `internet`. */
export const NETWORK_INPUTS = [...NETWORK_MODES, 'open'] as const;
export type NetworkInput = (typeof NETWORK_INPUTS)[number];
export const MAX_NETWORK_LIST_ENTRIES = 64;

interface NetworkRequest {
  network?: NetworkInput;
  cidr_allowlist?: string[];
  allowed_domains?: string[];
}

/**
 * The policy to store for a request: `open` becomes `internet`, CIDRs and domains are normalized
 * and de-duplicated. Each list is refused unless the mode is allowlist (an empty list changes nothing, so it passes).
 */
export function networkOfRequest(request: NetworkRequest): Pick<SandboxConfig, 'network' | 'cidr_allowlist' | 'allowed_domains'> {
  const mode = request.network === undefined || request.network === 'open' ? 'internet' : request.network;
  for (const field of ['cidr_allowlist', 'allowed_domains'] as const) {
    if (mode !== 'allowlist' && (request[field]?.length ?? 0) > 0) throw new SandboxFieldError(field, `is only valid with network "allowlist" (network is "${mode}")`);
  }
  return {
    network: mode,
    cidr_allowlist: unique((request.cidr_allowlist ?? []).map((text, index) => allowedCidr(text, index))),
    allowed_domains: unique((request.allowed_domains ?? []).map((text, index) => parsed('allowed_domains', index, () => parseDomainPattern(text)))),
  };
}

/** The policy applied to a stored sandbox; rows written before the allowlist existed say `open` and have no lists. */
export function networkOfConfig(config: SandboxConfig): SandboxNetwork {
  return {
    mode: config.network === 'open' ? 'internet' : config.network,
    cidrAllowlist: config.cidr_allowlist ?? [],
    allowedDomains: config.allowed_domains ?? [],
  };
}

function allowedCidr(text: string, index: number): string {
  const cidr = parsed('cidr_allowlist', index, () => parseCidr(text));
  const blocked = blockedRangeContaining(cidr);
  if (blocked) throw new SandboxFieldError(`cidr_allowlist[${index}]:`, `"${text}" lies inside ${blocked}, which no sandbox may reach (private, loopback, link-local, multicast and reserved ranges; IPv4 in IPv6 form must be written as IPv4)`);
  return formatCidr(cidr);
}

function parsed<T>(field: string, index: number, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new SandboxFieldError(`${field}[${index}]:`, (error as Error).message);
  }
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
