import { registerDecorator, ValidationArguments, ValidationOptions } from 'class-validator';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A `{NAME: "value"}` map of environment variables, bounded in count and total size. */
export function IsEnvMap(limits: { maxEntries: number; maxBytes: number }, options?: ValidationOptions): PropertyDecorator {
  return (target, propertyName) =>
    registerDecorator({
      name: 'isEnvMap',
      target: target.constructor,
      propertyName: String(propertyName),
      options,
      validator: {
        validate(value: unknown) {
          if (!value || typeof value !== 'object' || Array.isArray(value)) return false;
          const entries = Object.entries(value);
          const bytes = entries.reduce((total, [key, text]) => total + Buffer.byteLength(key) + Buffer.byteLength(String(text)), 0);
          return entries.length <= limits.maxEntries && bytes <= limits.maxBytes && entries.every(([key, text]) => ENV_NAME.test(key) && typeof text === 'string' && !text.includes('\0'));
        },
        defaultMessage(args: ValidationArguments) {
          return `${args.property} must map environment variable names ([A-Za-z_][A-Za-z0-9_]*) to strings, at most ${limits.maxEntries} entries and ${limits.maxBytes} bytes in all`;
        },
      },
    });
}

/** An absolute POSIX path without `..` segments, NUL bytes or a trailing slash (except "/"). */
export function IsSafeAbsolutePath(options?: ValidationOptions & { allowRoot?: boolean }): PropertyDecorator {
  return (target, propertyName) =>
    registerDecorator({
      name: 'isSafeAbsolutePath',
      target: target.constructor,
      propertyName: String(propertyName),
      options,
      validator: {
        validate(value: unknown) {
          if (typeof value !== 'string' || !value.startsWith('/') || value.length > 1024 || /[\0\n\r]/.test(value)) return false;
          if (value === '/') return options?.allowRoot === true;
          return !value.endsWith('/') && !value.split('/').some((segment) => segment === '..' || segment === '.');
        },
        defaultMessage(args: ValidationArguments) {
          return `${args.property} must be an absolute path (starting with /) without "." or ".." segments${options?.allowRoot ? '' : ', and not "/"'}`;
        },
      },
    });
}
