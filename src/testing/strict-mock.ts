import { inspect } from 'node:util';

/**
 * A test double whose listed methods all fail unless the test gives them a behaviour, so an
 * unexpected call to a collaborator fails the test instead of passing silently.
 */
export function strictMock<T>(name: string, methods: (keyof T & string)[], values: Partial<T> = {}): jest.Mocked<T> {
  const mock: Record<string, unknown> = { ...values };
  for (const method of methods) {
    mock[method] = jest.fn((...args: unknown[]) => {
      throw new Error(`unexpected call ${name}.${method}(${inspect(args, { depth: 1 })})`);
    });
  }
  return mock as jest.Mocked<T>;
}
