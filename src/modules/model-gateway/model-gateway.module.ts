import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { SandboxProviderModule } from '../../integrations/sandbox/sandbox-provider.module';
import { ModelGatewayToken } from './model-gateway-token.entity';
import { ModelGatewayTokens } from './model-gateway-tokens.service';
import { ModelGatewayHandler } from './model-gateway.handler';
import { ModelGatewayServer } from './model-gateway.server';

/** Per-run model credentials and the gateway that trades them for the operator's (see README "Model gateway"). */
@Module({
  imports: [TypeOrmModule.forFeature([ModelGatewayToken]), SandboxProviderModule],
  providers: [ModelGatewayTokens, ModelGatewayHandler, ModelGatewayServer],
  exports: [ModelGatewayTokens, ModelGatewayHandler],
})
export class ModelGatewayModule {}
