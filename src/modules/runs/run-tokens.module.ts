import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ModelGatewayToken } from './model-gateway-token.entity';
import { ModelGatewayTokens } from './model-gateway-tokens.service';

/** A run's model credential: issued and revoked by the runs feature, checked by the model gateway. */
@Module({
  imports: [TypeOrmModule.forFeature([ModelGatewayToken])],
  providers: [ModelGatewayTokens],
  exports: [ModelGatewayTokens],
})
export class RunTokensModule {}
