import { InvalidInputError } from './domain-error';
import { accountKeyBase, assertSafeKeyPrefix, normalizeKeyPrefix } from './key-prefix';

describe('key prefixes', () => {
  it.each(['', 'snapshots/', 'team/a/', 'no-slash'])('accepts the key prefix %j', (prefix) => {
    expect(() => assertSafeKeyPrefix(prefix)).not.toThrow();
  });

  it.each(['..', '../x/', 'a/../b/', '/abs/', 'a//b/', './a/', 'tab\there/', 'del\u007f/'])('rejects the key prefix %j', (prefix) => {
    expect(() => assertSafeKeyPrefix(prefix)).toThrow(InvalidInputError);
  });

  it.each([
    ['', ''],
    ['projects', 'projects/'],
    ['projects/', 'projects/'],
    ['team/a', 'team/a/'],
  ])('treats %j as the folder %j', (prefix, folder) => {
    expect(normalizeKeyPrefix(prefix)).toBe(folder);
  });

  it('puts the account in its own folder below the prefix, with or without a trailing slash', () => {
    expect(accountKeyBase('projects', 'acc-1')).toBe('projects/acc-1/');
    expect(accountKeyBase('projects/', 'acc-1')).toBe('projects/acc-1/');
    expect(accountKeyBase('', 'acc-1')).toBe('acc-1/');
  });
});
