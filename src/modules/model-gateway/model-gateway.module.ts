import { Module } from '@nestjs/common';
import { IntegrationsModule } from '../../integrations/integrations.module';
import { RunTokensModule } from '../runs/run-tokens.module';
import { ModelGatewayHandler } from './model-gateway.handler';
import { ModelGatewayServer } from './model-gateway.server';

/** The gateway that trades a run's token for the operator's credentials (see README "Model gateway"). */
@Module({
  imports: [RunTokensModule, IntegrationsModule],
  providers: [ModelGatewayHandler, ModelGatewayServer],
  exports: [ModelGatewayHandler],
})
export class ModelGatewayModule {}
