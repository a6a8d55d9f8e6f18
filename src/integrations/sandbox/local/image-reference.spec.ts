import { InvalidImageReferenceError } from '../sandbox-provider.errors';
import { canonicalReference, isInsecureRegistry, parseImageReference, pinnedReference } from './image-reference';

const DIGEST = `sha256:${'ab'.repeat(32)}`;

describe('parseImageReference', () => {
  it.each([
    ['alpine:3.21', { registry: 'docker.io', repository: 'library/alpine', tag: '3.21' }],
    ['alpine', { registry: 'docker.io', repository: 'library/alpine', tag: 'latest' }],
    ['team/tool', { registry: 'docker.io', repository: 'team/tool', tag: 'latest' }],
    ['debian:bookworm-slim', { registry: 'docker.io', repository: 'library/debian', tag: 'bookworm-slim' }],
    ['127.0.0.1:5000/test/busy:v2', { registry: '127.0.0.1:5000', repository: 'test/busy', tag: 'v2' }],
    ['localhost/tool', { registry: 'localhost', repository: 'tool', tag: 'latest' }],
    [`registry.example.com/team/img@${DIGEST}`, { registry: 'registry.example.com', repository: 'team/img', tag: undefined, digest: DIGEST }],
    [`ghcr.io/org/img:1.0@${DIGEST}`, { registry: 'ghcr.io', repository: 'org/img', tag: '1.0', digest: DIGEST }],
  ])('reads %s with Docker defaults', (text, expected) => {
    expect(parseImageReference(text)).toEqual({ text, digest: undefined, ...expected });
  });

  it.each(['', 'Alpine', 'alpine:', 'alpine@sha256:abc', `a@${DIGEST}@${DIGEST}`, 'bad host!/x', 'x//y', 'x:tag with space'])('refuses %j naming image_base', (text) => {
    const parse = () => parseImageReference(text);
    expect(parse).toThrow(InvalidImageReferenceError);
    expect(parse).toThrow(/^image_base: /);
  });
});

describe('canonicalReference and pinnedReference', () => {
  it('name one image whatever the spelling', () => {
    expect(canonicalReference(parseImageReference('alpine'))).toBe(canonicalReference(parseImageReference('docker.io/library/alpine:latest')));
    expect(canonicalReference(parseImageReference(`x.io/a:1@${DIGEST}`))).toBe(`x.io/a@${DIGEST}`);
    expect(pinnedReference(parseImageReference('alpine:3'), DIGEST)).toBe(`docker.io/library/alpine@${DIGEST}`);
  });
});

describe('isInsecureRegistry', () => {
  it('allows loopback registries without listing and others only when listed by host:port', () => {
    expect(isInsecureRegistry('127.0.0.1:5000', [])).toBe(true);
    expect(isInsecureRegistry('127.8.9.1', [])).toBe(true);
    expect(isInsecureRegistry('localhost:5000', [])).toBe(true);
    expect(isInsecureRegistry('[::1]:5000', [])).toBe(true);
    expect(isInsecureRegistry('registry.lan:5000', [])).toBe(false);
    expect(isInsecureRegistry('registry.lan:5000', ['registry.lan:5000'])).toBe(true);
    expect(isInsecureRegistry('registry.lan:5001', ['registry.lan:5000'])).toBe(false);
    expect(isInsecureRegistry('docker.io', ['registry.lan:5000'])).toBe(false);
  });
});
