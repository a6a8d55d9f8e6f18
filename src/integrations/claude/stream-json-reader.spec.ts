import { PassThrough, Readable } from 'node:stream';
import { ParsedLine, readStreamJson, StreamJsonReader } from './stream-json-reader';

function readAll(chunks: Buffer[], reader = new StreamJsonReader()): ParsedLine[] {
  return [...chunks.flatMap((chunk) => reader.push(chunk)), ...reader.end()];
}

function bytesOneByOne(text: string): Buffer[] {
  return [...Buffer.from(text, 'utf8')].map((byte) => Buffer.from([byte]));
}

/** Where each line of `text` ends (its newline included), in bytes: the offsets the reader must give. */
function lineEnds(text: string, from = 0): number[] {
  const ends: number[] = [];
  const bytes = Buffer.from(text, 'utf8');
  for (let index = bytes.indexOf(0x0a); index !== -1; index = bytes.indexOf(0x0a, index + 1)) ends.push(from + index + 1);
  return ends;
}

async function collect(lines: AsyncIterable<ParsedLine>): Promise<ParsedLine[]> {
  const all: ParsedLine[] = [];
  for await (const line of lines) all.push(line);
  return all;
}

const init = { type: 'system', subtype: 'init', session_id: 's-1' };
const assistant = { type: 'assistant', message: { content: [{ type: 'text', text: 'Größe 🚀 日本語 \u{1F468}\u200D\u{1F469}\u200D\u{1F467}' }] } };
const transcript = `${JSON.stringify(init)}\n${JSON.stringify(assistant)}\n`;
const initEnd = Buffer.byteLength(JSON.stringify(init)) + 1;
const transcriptBytes = Buffer.byteLength(transcript);

describe('StreamJsonReader', () => {
  it('parses typed JSON objects and keeps their payload unchanged', () => {
    expect(readAll([Buffer.from(transcript)])).toEqual([
      { kind: 'json', type: 'system', payload: init, end: initEnd },
      { kind: 'json', type: 'assistant', payload: assistant, end: transcriptBytes },
    ]);
  });

  it('gives the same lines when the stream arrives one byte at a time, splitting every multi-byte character', () => {
    expect(readAll(bytesOneByOne(transcript))).toEqual(readAll([Buffer.from(transcript)]));
  });

  it('gives each line the byte offset just after its newline, counting multi-byte characters in bytes', () => {
    const text = `${transcript}{"type":"x","t":"é"}\r\nplain 日本\n`;
    const lines = readAll([Buffer.from(text)]);

    expect(lines.map((line) => line.end)).toEqual(lineEnds(text));
    expect(lines.map((line) => line.end)).not.toEqual([...text].map((_, i) => i).filter((i) => text[i] === '\n').map((i) => i + 1));
    expect(lines[lines.length - 1].end).toBe(Buffer.byteLength(text));
  });

  it('gives the same offsets for every three-chunk split of the stream, cutting multi-byte characters', () => {
    const whole = Buffer.from(`${JSON.stringify({ type: 'a', t: 'ü🚀' })}\n日本\n`);
    const expected = readAll([whole]);
    expect(expected.map((line) => line.end)).toEqual([whole.indexOf(0x0a) + 1, whole.length]);
    for (let first = 0; first <= whole.length; first++) {
      for (let second = first; second <= whole.length; second++) {
        expect(readAll([whole.subarray(0, first), whole.subarray(first, second), whole.subarray(second)])).toEqual(expected);
      }
    }
  });

  it('counts offsets from the start offset it is given, where reading resumed', () => {
    const reader = new StreamJsonReader(undefined, 1000);

    expect(reader.push(Buffer.from('{"type":"a"}\n{"ty'))).toEqual([{ kind: 'json', type: 'a', payload: { type: 'a' }, end: 1013 }]);
    expect(reader.push(Buffer.from('pe":"b"}\n\n'))).toEqual([{ kind: 'json', type: 'b', payload: { type: 'b' }, end: 1026 }]);
    expect(reader.push(Buffer.from('tail'))).toEqual([]);
    expect(reader.end()).toEqual([{ kind: 'output', line: 'tail', end: 1031 }]);
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

    expect(readAll(chunks)).toEqual([{ kind: 'json', type: 'x', payload: { type: 'x', t: '🚀' }, end: 17 + 4 + 3 }]);
  });

  it('accepts CRLF line endings', () => {
    expect(readAll([Buffer.from('{"type":"a"}\r\n{"type":"b"}\r\n')]).map((line) => line.kind === 'json' && line.type)).toEqual(['a', 'b']);
  });

  it('reports garbage and JSON that is not a typed object as output lines, and carries on', () => {
    const input = 'Warning: something odd\n{"type":"a"\n[1,2]\n42\n"text"\n{"no_type":true}\n{"type":7}\n{"type":"ok"}\n';

    expect(readAll([Buffer.from(input)])).toEqual([
      { kind: 'output', line: 'Warning: something odd', end: 23 },
      { kind: 'output', line: '{"type":"a"', end: 35 },
      { kind: 'output', line: '[1,2]', end: 41 },
      { kind: 'output', line: '42', end: 44 },
      { kind: 'output', line: '"text"', end: 51 },
      { kind: 'output', line: '{"no_type":true}', end: 68 },
      { kind: 'output', line: '{"type":7}', end: 79 },
      { kind: 'json', type: 'ok', payload: { type: 'ok' }, end: 93 },
    ]);
    expect(readAll([Buffer.from(input)]).map((line) => line.end)).toEqual(lineEnds(input));
  });

  it('replaces invalid UTF-8 with U+FFFD instead of failing', () => {
    const input = Buffer.concat([Buffer.from('bad '), Buffer.from([0xff, 0xfe]), Buffer.from(' bytes\n')]);

    expect(readAll([input])).toEqual([{ kind: 'output', line: 'bad \uFFFD\uFFFD bytes', end: input.length }]);
  });

  it('skips empty and blank lines, which still count in the offsets', () => {
    expect(readAll([Buffer.from('\n\r\n   \n{"type":"a"}\n\n{"type":"b"}\n')])).toEqual([
      { kind: 'json', type: 'a', payload: { type: 'a' }, end: 20 },
      { kind: 'json', type: 'b', payload: { type: 'b' }, end: 34 },
    ]);
  });

  it('emits a final line that has no trailing newline on end()', () => {
    const reader = new StreamJsonReader();

    expect(reader.push(Buffer.from('{"type":"a"}\n{"type":"result"'))).toHaveLength(1);
    expect(reader.push(Buffer.from(',"x":1}'))).toEqual([]);
    expect(reader.end()).toEqual([{ kind: 'json', type: 'result', payload: { type: 'result', x: 1 }, end: 13 + 23 }]);
    expect(reader.end()).toEqual([]);
  });

  it('returns each line as soon as its newline arrives', () => {
    const reader = new StreamJsonReader();

    expect(reader.push(Buffer.from('{"type":"a"}'))).toEqual([]);
    expect(reader.push(Buffer.from('\n'))).toEqual([{ kind: 'json', type: 'a', payload: { type: 'a' }, end: 13 }]);
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
    expect(lines[0]).toEqual({ kind: 'json', type: 'assistant', payload: { type: 'assistant', text }, end: line.length + 2 });
    expect(lines[1]).toEqual({ kind: 'json', type: 'next', payload: { type: 'next' }, end: line.length + 2 + 16 });
  });

  it('flags a line over the limit as oversized, keeping only its head, and reads the following lines normally', () => {
    const reader = new StreamJsonReader(1000);
    const hundredBytes = Array.from({ length: 50 }, () => Buffer.alloc(100, 'a'));
    const chunks = [Buffer.from('{"type":"huge","x":"'), ...hundredBytes, Buffer.from('"}\n{"type":"after"}\n')];

    const lines = readAll(chunks, reader);

    expect(lines).toEqual([
      { kind: 'oversized', bytes: 20 + 5000 + 2, head: `{"type":"huge","x":"${'a'.repeat(1000)}`, end: 20 + 5000 + 3 },
      { kind: 'json', type: 'after', payload: { type: 'after' }, end: 20 + 5000 + 3 + 17 },
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

    expect(lines).toEqual([{ kind: 'oversized', bytes: 600, head: 'z'.repeat(300), end: 600 }]);
  });
});

describe('readStreamJson', () => {
  it('yields the parsed lines of a readable stream, including a final unterminated line', async () => {
    const stream = Readable.from(bytesOneByOne(`${transcript}not json`));
    const lines: ParsedLine[] = [];
    for await (const line of readStreamJson(stream)) lines.push(line);

    expect(lines).toEqual([
      { kind: 'json', type: 'system', payload: init, end: initEnd },
      { kind: 'json', type: 'assistant', payload: assistant, end: transcriptBytes },
      { kind: 'output', line: 'not json', end: transcriptBytes + 8 },
    ]);
  });

  it('counts from startOffset', async () => {
    const lines = await collect(readStreamJson(Readable.from([Buffer.from(transcript)]), { startOffset: 512 }));

    expect(lines.map((line) => line.end)).toEqual([512 + initEnd, 512 + transcriptBytes]);
  });

  it('does not give an unterminated last line when the output is not complete (only no longer followed)', async () => {
    const isComplete = jest.fn(() => false);
    const lines = await collect(readStreamJson(Readable.from([Buffer.from(`${transcript}{"type":"resu`)]), { isComplete }));

    expect(lines).toEqual([
      { kind: 'json', type: 'system', payload: init, end: initEnd },
      { kind: 'json', type: 'assistant', payload: assistant, end: transcriptBytes },
    ]);
    expect(isComplete).toHaveBeenCalledTimes(1);
  });

  it('gives an unterminated last line when the output is complete', async () => {
    const lines = await collect(readStreamJson(Readable.from([Buffer.from(`${transcript}{"type":"result"}`)]), { startOffset: 10, isComplete: () => true }));

    expect(lines[2]).toEqual({ kind: 'json', type: 'result', payload: { type: 'result' }, end: 10 + transcriptBytes + 17 });
  });

  it('asks whether the output is complete only once the stream has ended', async () => {
    const stream = new PassThrough();
    let complete = false;
    const lines = collect(readStreamJson(stream, { isComplete: () => complete }));
    stream.write('{"type":"a"}\npartial');
    await new Promise((resolve) => setImmediate(resolve));
    complete = true;
    stream.end();

    expect((await lines).map((line) => line.end)).toEqual([13, 20]);
  });
});
