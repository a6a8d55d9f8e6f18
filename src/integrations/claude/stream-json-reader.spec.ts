import { Readable } from 'node:stream';
import { ParsedLine, readStreamJson, StreamJsonReader } from './stream-json-reader';

function readAll(chunks: Buffer[], reader = new StreamJsonReader()): ParsedLine[] {
  return [...chunks.flatMap((chunk) => reader.push(chunk)), ...reader.end()];
}

function bytesOneByOne(text: string): Buffer[] {
  return [...Buffer.from(text, 'utf8')].map((byte) => Buffer.from([byte]));
}

const init = { type: 'system', subtype: 'init', session_id: 's-1' };
const assistant = { type: 'assistant', message: { content: [{ type: 'text', text: 'Größe 🚀 日本語 \u{1F468}\u200D\u{1F469}\u200D\u{1F467}' }] } };
const transcript = `${JSON.stringify(init)}\n${JSON.stringify(assistant)}\n`;

describe('StreamJsonReader', () => {
  it('parses typed JSON objects and keeps their payload unchanged', () => {
    expect(readAll([Buffer.from(transcript)])).toEqual([
      { kind: 'json', type: 'system', payload: init },
      { kind: 'json', type: 'assistant', payload: assistant },
    ]);
  });

  it('gives the same lines when the stream arrives one byte at a time, splitting every multi-byte character', () => {
    expect(readAll(bytesOneByOne(transcript))).toEqual(readAll([Buffer.from(transcript)]));
  });

  it('gives the same lines for every two-chunk split of the stream', () => {
    const whole = Buffer.from(transcript);
    const expected = readAll([whole]);
    for (let cut = 0; cut <= whole.length; cut++) {
      expect(readAll([whole.subarray(0, cut), whole.subarray(cut)])).toEqual(expected);
    }
  });

  it('reassembles an emoji whose four bytes arrive in separate chunks', () => {
    const emoji = Buffer.from('🚀');
    const chunks = [Buffer.from('{"type":"x","t":"'), emoji.subarray(0, 1), emoji.subarray(1, 3), emoji.subarray(3), Buffer.from('"}\n')];

    expect(readAll(chunks)).toEqual([{ kind: 'json', type: 'x', payload: { type: 'x', t: '🚀' } }]);
  });

  it('accepts CRLF line endings', () => {
    expect(readAll([Buffer.from('{"type":"a"}\r\n{"type":"b"}\r\n')]).map((line) => line.kind === 'json' && line.type)).toEqual(['a', 'b']);
  });

  it('reports garbage and JSON that is not a typed object as output lines, and carries on', () => {
    const input = 'Warning: something odd\n{"type":"a"\n[1,2]\n42\n"text"\n{"no_type":true}\n{"type":7}\n{"type":"ok"}\n';

    expect(readAll([Buffer.from(input)])).toEqual([
      { kind: 'output', line: 'Warning: something odd' },
      { kind: 'output', line: '{"type":"a"' },
      { kind: 'output', line: '[1,2]' },
      { kind: 'output', line: '42' },
      { kind: 'output', line: '"text"' },
      { kind: 'output', line: '{"no_type":true}' },
      { kind: 'output', line: '{"type":7}' },
      { kind: 'json', type: 'ok', payload: { type: 'ok' } },
    ]);
  });

  it('replaces invalid UTF-8 with U+FFFD instead of failing', () => {
    const input = Buffer.concat([Buffer.from('bad '), Buffer.from([0xff, 0xfe]), Buffer.from(' bytes\n')]);

    expect(readAll([input])).toEqual([{ kind: 'output', line: 'bad \uFFFD\uFFFD bytes' }]);
  });

  it('skips empty and blank lines', () => {
    expect(readAll([Buffer.from('\n\r\n   \n{"type":"a"}\n\n')])).toEqual([{ kind: 'json', type: 'a', payload: { type: 'a' } }]);
  });

  it('emits a final line that has no trailing newline on end()', () => {
    const reader = new StreamJsonReader();

    expect(reader.push(Buffer.from('{"type":"a"}\n{"type":"result"'))).toHaveLength(1);
    expect(reader.push(Buffer.from(',"x":1}'))).toEqual([]);
    expect(reader.end()).toEqual([{ kind: 'json', type: 'result', payload: { type: 'result', x: 1 } }]);
    expect(reader.end()).toEqual([]);
  });

  it('returns each line as soon as its newline arrives', () => {
    const reader = new StreamJsonReader();

    expect(reader.push(Buffer.from('{"type":"a"}'))).toEqual([]);
    expect(reader.push(Buffer.from('\n'))).toEqual([{ kind: 'json', type: 'a', payload: { type: 'a' } }]);
  });

  it('parses a 10 MB line delivered in 64 KB chunks', () => {
    const text = 'é'.repeat(5 * 1024 * 1024 - 20);
    const line = Buffer.from(JSON.stringify({ type: 'assistant', text }));
    expect(line.length).toBeLessThanOrEqual(10 * 1024 * 1024);
    const chunks: Buffer[] = [];
    for (let offset = 0; offset < line.length; offset += 65536) chunks.push(line.subarray(offset, offset + 65536));
    chunks.push(Buffer.from('\r\n{"type":"next"}\n'));

    const lines = readAll(chunks);

    expect(lines).toHaveLength(2);
    expect(lines[0]).toEqual({ kind: 'json', type: 'assistant', payload: { type: 'assistant', text } });
    expect(lines[1]).toEqual({ kind: 'json', type: 'next', payload: { type: 'next' } });
  });

  it('flags a line over the limit as oversized, keeping only its head, and reads the following lines normally', () => {
    const reader = new StreamJsonReader(1000);
    const hundredBytes = Array.from({ length: 50 }, () => Buffer.alloc(100, 'a'));
    const chunks = [Buffer.from('{"type":"huge","x":"'), ...hundredBytes, Buffer.from('"}\n{"type":"after"}\n')];

    const lines = readAll(chunks, reader);

    expect(lines).toEqual([
      { kind: 'oversized', bytes: 20 + 5000 + 2, head: `{"type":"huge","x":"${'a'.repeat(1000)}` },
      { kind: 'json', type: 'after', payload: { type: 'after' } },
    ]);
  });

  it('accepts a line of exactly the limit, with or without CR, and flags one byte more', () => {
    const exact = `{"type":"a","x":"${'b'.repeat(100 - 19)}"}`;
    expect(Buffer.byteLength(exact)).toBe(100);

    const lines = readAll([Buffer.from(`${exact}\n${exact}\r\n${exact} \n`)], new StreamJsonReader(100));

    expect(lines.map((line) => line.kind)).toEqual(['json', 'json', 'oversized']);
    expect(lines[2]).toMatchObject({ bytes: 101 });
  });

  it('flags an oversized final line that never gets a newline', () => {
    const lines = readAll([Buffer.alloc(300, 'z'), Buffer.alloc(300, 'z')], new StreamJsonReader(100));

    expect(lines).toEqual([{ kind: 'oversized', bytes: 600, head: 'z'.repeat(300) }]);
  });
});

describe('readStreamJson', () => {
  it('yields the parsed lines of a readable stream, including a final unterminated line', async () => {
    const stream = Readable.from(bytesOneByOne(`${transcript}not json`));
    const lines: ParsedLine[] = [];
    for await (const line of readStreamJson(stream)) lines.push(line);

    expect(lines).toEqual([
      { kind: 'json', type: 'system', payload: init },
      { kind: 'json', type: 'assistant', payload: assistant },
      { kind: 'output', line: 'not json' },
    ]);
  });
});
