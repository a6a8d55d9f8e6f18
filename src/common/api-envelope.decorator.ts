import { applyDecorators, HttpStatus, Type } from '@nestjs/common';
import { ApiExtraModels, ApiResponse, getSchemaPath } from '@nestjs/swagger';

/** Documents a `{ data: T }` (or `{ data: T[] }`) success answer. */
export const ApiEnvelope = (model: Type<unknown>, options: { status?: HttpStatus; isArray?: boolean; description?: string } = {}) => {
  const item = { $ref: getSchemaPath(model) };
  return applyDecorators(
    ApiExtraModels(model),
    ApiResponse({
      status: options.status ?? HttpStatus.OK,
      description: options.description ?? 'Success',
      schema: { type: 'object', required: ['data'], properties: { data: options.isArray ? { type: 'array', items: item } : item } },
    }),
  );
};
