import { jsonBodyReviver, JsonTooDeepError, NulCharacterError } from './json-body-guards';

const parse = (text: string) => JSON.parse(text, jsonBodyReviver(3));

describe('jsonBodyReviver', () => {
  it('keeps ordinary bodies as they are', () => {
    expect(parse('{"a":[1,{"b":"c"}],"d":null}')).toEqual({ a: [1, { b: 'c' }], d: null });
  });

  it('refuses U+0000 in a string, naming the field, and in a property name', () => {
    expect(() => parse('{"name":"a\\u0000b"}')).toThrow(new NulCharacterError('name must not contain NUL (U+0000) characters'));
    expect(() => parse('{"env":{"A\\u0000":"x"}}')).toThrow(NulCharacterError);
    expect(() => parse('"\\u0000"')).toThrow('the body must not contain NUL');
  });

  it('refuses nesting past the limit, counting objects and arrays alike', () => {
    expect(parse('{"a":[{"b":1}]}')).toEqual({ a: [{ b: 1 }] });
    expect(() => parse('{"a":[{"b":[]}]}')).toThrow(new JsonTooDeepError('JSON request body is nested deeper than 3 levels'));
  });
});
