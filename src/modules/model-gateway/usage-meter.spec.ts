import { UsageMeter } from './usage-meter';

const sse = (type: string, payload: object) => `event: ${type}\r\ndata: ${JSON.stringify({ type, ...payload })}\r\n\r\n`;

/** Feeds the text in pieces of `size` bytes, cutting lines and multi-byte characters anywhere. */
function meterInPieces(meter: UsageMeter, text: string, size: number) {
  const bytes = Buffer.from(text, 'utf8');
  for (let start = 0; start < bytes.length; start += size) meter.push(bytes.subarray(start, start + size));
  return meter.end();
}

describe('UsageMeter', () => {
  const stream = [
    sse('message_start', { message: { usage: { input_tokens: 900, output_tokens: 1, cache_creation_input_tokens: 40, cache_read_input_tokens: 8000 } } }),
    sse('content_block_delta', { delta: { type: 'text_delta', text: 'ünïcødé "usage": {"input_tokens": 5} ✓' } }),
    sse('message_delta', { usage: { output_tokens: 77 } }),
    sse('message_stop', {}),
  ].join('');

  it.each([1, 3, 7, 4096])('reads SSE usage whatever the chunk size (%i bytes), the final message_delta counts replacing the first', (size) => {
    expect(meterInPieces(UsageMeter.forContentType('text/event-stream; charset=utf-8'), stream, size)).toEqual({
      input_tokens: 900,
      output_tokens: 77,
      cache_creation_input_tokens: 40,
      cache_read_input_tokens: 8000,
    });
  });

  it('reads the usage of a JSON response', () => {
    const body = JSON.stringify({ type: 'message', usage: { input_tokens: 12, output_tokens: 3 } });

    expect(meterInPieces(UsageMeter.forContentType('application/json'), body, 5)).toEqual({ input_tokens: 12, output_tokens: 3, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 });
  });

  it('counts nothing for bodies that are not JSON, negative or missing numbers', () => {
    expect(meterInPieces(UsageMeter.forContentType('application/json'), '<html>bad gateway</html>', 4)).toEqual({ input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 });
    expect(meterInPieces(UsageMeter.forContentType('text/event-stream'), sse('message_delta', { usage: { output_tokens: -4, input_tokens: 'x' } }), 10)).toEqual({ input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 });
  });
});
