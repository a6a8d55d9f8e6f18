import { AppConfig } from '../../config/app-config';
import { LocalSandboxProvider } from './local/local-sandbox.provider';
import { assertModalConfigured } from './modal/modal-client';
import { ModalSandboxProvider } from './modal/modal-sandbox.provider';
import { ModelGatewayEndpoint } from './model-gateway-endpoint';
import { SandboxProvider } from './sandbox-provider';

/** The one place the sandbox engine is chosen (SANDBOX_PROVIDER); start-up fails when it cannot work. */
export function createSandboxProvider(config: AppConfig, gateway: ModelGatewayEndpoint): SandboxProvider {
  if (config.sandbox.provider === 'modal') {
    assertModalConfigured(config);
    return new ModalSandboxProvider(config);
  }
  const local = new LocalSandboxProvider(config, gateway);
  local.assertReady();
  return local;
}
