import { CallHandler, ExecutionContext, Injectable, NestInterceptor, SetMetadata, StreamableFile } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { map, Observable } from 'rxjs';

const RAW_RESPONSE = 'raw_response';
/** Marks a handler whose response is not wrapped in `{ data }` (event streams, file downloads). */
export const RawResponse = () => SetMetadata(RAW_RESPONSE, true);

/** A page of a list: answered as `{ "data": [...], "next_cursor": … }`. */
export class Paginated<T> {
  constructor(
    readonly items: T[],
    readonly nextCursor: string | null,
  ) {}
}

/** Wraps every JSON success answer as `{ "data": … }`. */
@Injectable()
export class ResponseEnvelopeInterceptor implements NestInterceptor {
  constructor(private readonly reflector: Reflector) {}

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http' || this.reflector.get<boolean>(RAW_RESPONSE, context.getHandler())) {
      return next.handle();
    }
    return next.handle().pipe(map(envelope));
  }
}

function envelope(data: unknown): unknown {
  if (data === undefined || data instanceof StreamableFile) return data;
  if (data instanceof Paginated) return { data: data.items, next_cursor: data.nextCursor };
  return { data };
}
