import { PasswordHasher } from './password-hasher';

/** Replaces one field of a stored `scrypt$cost$blockSize$parallelism$salt$key` hash. */
function withField(stored: string, index: number, value: string): string {
  const fields = stored.split('$');
  fields[index] = value;
  return fields.join('$');
}

/** The same base64 text with its first character changed, so the bytes differ. */
function flipped(base64: string): string {
  return (base64[0] === 'A' ? 'B' : 'A') + base64.slice(1);
}

describe('PasswordHasher', () => {
  const hasher = new PasswordHasher();
  let stored: string;

  beforeAll(async () => {
    stored = await hasher.hash('correct horse battery staple');
  });

  it('accepts the password a hash was made from', async () => {
    await expect(hasher.verify('correct horse battery staple', stored)).resolves.toBe(true);
  });

  it('refuses any other password', async () => {
    await expect(hasher.verify('correct horse battery stapler', stored)).resolves.toBe(false);
  });

  it('salts every hash and never contains the password', async () => {
    const again = await hasher.hash('correct horse battery staple');

    expect(again).not.toBe(stored);
    expect(stored).toMatch(/^scrypt\$/);
    expect(stored).not.toContain('correct horse');
  });

  it('refuses a hash whose key was tampered with', async () => {
    const tampered = withField(stored, 5, flipped(stored.split('$')[5]));

    await expect(hasher.verify('correct horse battery staple', tampered)).resolves.toBe(false);
  });

  it('refuses a hash whose salt was tampered with', async () => {
    const tampered = withField(stored, 4, flipped(stored.split('$')[4]));

    await expect(hasher.verify('correct horse battery staple', tampered)).resolves.toBe(false);
  });

  it('refuses a hash of another algorithm or with missing fields', async () => {
    await expect(hasher.verify('x', withField(stored, 0, 'bcrypt'))).resolves.toBe(false);
    await expect(hasher.verify('x', stored.split('$').slice(0, 5).join('$'))).resolves.toBe(false);
    await expect(hasher.verify('x', '')).resolves.toBe(false);
  });

  it('refuses a hash whose cost parameters were tampered with', async () => {
    await expect(hasher.verify('correct horse battery staple', withField(stored, 1, '3'))).resolves.toBe(false);
    await expect(hasher.verify('correct horse battery staple', withField(stored, 1, 'lots'))).resolves.toBe(false);
  });

  it('spends a hash on a missing user and reports failure', async () => {
    await expect(hasher.verifyAgainstNothing('anything')).resolves.toBe(false);
  });
});
