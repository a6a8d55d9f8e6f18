import { Module } from '@nestjs/common';
import { SandboxesModule } from '../sandboxes/sandboxes.module';
import { FilesController } from './files.controller';
import { FilesService } from './files.service';

@Module({ imports: [SandboxesModule], controllers: [FilesController], providers: [FilesService] })
export class FilesModule {}
