import { Module } from '@nestjs/common';
import { IntegrationsModule } from '../../integrations/integrations.module';
import { ImagesController } from './images.controller';
import { ImagesService } from './images.service';

@Module({
  imports: [IntegrationsModule],
  controllers: [ImagesController],
  providers: [ImagesService],
})
export class ImagesModule {}
