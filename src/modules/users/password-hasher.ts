import { Injectable } from '@nestjs/common';
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

const COST = 16384;
const BLOCK_SIZE = 8;
const PARALLELISM = 1;
const KEY_LENGTH = 64;

function derive(password: string, salt: Buffer, cost: number, blockSize: number, parallelism: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, KEY_LENGTH, { N: cost, r: blockSize, p: parallelism, maxmem: 256 * cost * blockSize }, (error, key) =>
      error ? reject(error) : resolve(key),
    ),
  );
}

/** Parameters we could have written: a power-of-two cost up to 2^17, modest block size and parallelism. */
function hasSaneParameters(cost: number, blockSize: number, parallelism: number): boolean {
  const powerOfTwo = Number.isInteger(cost) && cost >= 2 && (cost & (cost - 1)) === 0;
  return powerOfTwo && cost <= 2 ** 17 && Number.isInteger(blockSize) && blockSize >= 1 && blockSize <= 16 && Number.isInteger(parallelism) && parallelism >= 1 && parallelism <= 16;
}

/** scrypt (memory-hard) password hashes, self-describing so the cost can be raised later. */
@Injectable()
export class PasswordHasher {
  async hash(password: string): Promise<string> {
    const salt = randomBytes(16);
    const key = await derive(password, salt, COST, BLOCK_SIZE, PARALLELISM);
    return ['scrypt', COST, BLOCK_SIZE, PARALLELISM, salt.toString('base64'), key.toString('base64')].join('$');
  }

  async verify(password: string, stored: string): Promise<boolean> {
    const [algorithm, cost, blockSize, parallelism, salt, key] = stored.split('$');
    if (algorithm !== 'scrypt' || !key || !hasSaneParameters(Number(cost), Number(blockSize), Number(parallelism))) return false;
    const expected = Buffer.from(key, 'base64');
    const actual = await derive(password, Buffer.from(salt, 'base64'), Number(cost), Number(blockSize), Number(parallelism));
    return actual.length === expected.length && timingSafeEqual(actual, expected);
  }

  /** Spends the same time as a real check, so unknown emails cannot be told apart by timing. */
  async verifyAgainstNothing(password: string): Promise<false> {
    await derive(password, randomBytes(16), COST, BLOCK_SIZE, PARALLELISM);
    return false;
  }
}
