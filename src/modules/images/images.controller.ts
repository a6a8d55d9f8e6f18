import { Controller, Delete, Get, HttpCode, HttpStatus, Param, Res } from '@nestjs/common';
import { ApiBadRequestResponse, ApiConflictResponse, ApiNoContentResponse, ApiNotFoundResponse, ApiOperation, ApiParam, ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { ApiEnvelope } from '../../common/api-envelope.decorator';
import { AdminOnly, Authenticated } from '../../common/auth-policy.decorator';
import { ImageResponse } from './image.response';
import { ImagesService } from './images.service';

/** Set on GET /api/images when the engine keeps no image cache of its own (Modal): the empty list says nothing about Modal's images. */
export const IMAGE_CACHE_HEADER = 'X-Image-Cache';

@ApiTags('images')
@Controller('api/images')
export class ImagesController {
  constructor(private readonly images: ImagesService) {}

  @Get()
  @Authenticated()
  @ApiOperation({
    operationId: 'listImages',
    summary: 'Registry images in the engine’s cache, most recently used first, with size and last use',
    description:
      'The local engine pulls registry images (image_base) into a cache under DATA_DIR, shared by every account. ' +
      'On Modal, which builds and keeps images in Modal, the list is empty and the answer carries `X-Image-Cache: none`.',
  })
  @ApiEnvelope(ImageResponse, { isArray: true })
  async list(@Res({ passthrough: true }) response: Response): Promise<ImageResponse[]> {
    const images = await this.images.list();
    if (!images) response.setHeader(IMAGE_CACHE_HEADER, 'none');
    return (images ?? []).map(ImageResponse.from);
  }

  @Delete(':digest')
  @AdminOnly()
  @HttpCode(HttpStatus.NO_CONTENT)
  @ApiOperation({
    operationId: 'deleteImage',
    summary: 'Remove a cached image (admin only); the next create naming it pulls it again',
    description: 'Refused with 409 while a sandbox runs on the image (or is being created on it). On Modal every digest answers 404: it keeps no image cache here.',
  })
  @ApiParam({ name: 'digest', description: 'Manifest digest as listed', example: 'sha256:3d5a4f0e0c1bb7e1f2a9c1f9f1a0a6b3e1d1c6f4a9a0b8d5c2e7f3a1b9c8d7e6' })
  @ApiNoContentResponse({ description: 'Removed' })
  @ApiBadRequestResponse({ description: 'digest is not sha256:<64 hex digits> (details.field = "digest")' })
  @ApiNotFoundResponse({ description: 'No cached image with this digest' })
  @ApiConflictResponse({ description: 'A sandbox runs on the image' })
  async remove(@Param('digest') digest: string): Promise<void> {
    await this.images.remove(digest);
  }
}
