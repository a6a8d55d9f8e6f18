/**
 * Checks on JSON request bodies that hold for every route, before any validation or transformation:
 * PostgreSQL refuses U+0000 in text, and class-transformer recurses once per nesting level.
 */

/** A string (or a key) of the body holds U+0000. */
export class NulCharacterError extends Error {
  readonly status = 400;
}

/** The body nests objects/arrays deeper than the limit. */
export class JsonTooDeepError extends Error {
  readonly status = 400;
}

/**
 * A JSON.parse reviver (called for every value, innermost first) refusing U+0000 in strings and
 * keys, naming the field, and objects/arrays nested deeper than maxDepth.
 */
export function jsonBodyReviver(maxDepth: number): (key: string, value: unknown) => unknown {
  const depths = new WeakMap<object, number>();
  return (key, value) => {
    if (key.includes('\0')) throw new NulCharacterError('a property name must not contain NUL (U+0000) characters');
    if (typeof value === 'string' && value.includes('\0')) throw new NulCharacterError(`${key === '' ? 'the body' : key} must not contain NUL (U+0000) characters`);
    if (typeof value !== 'object' || value === null) return value;
    let depth = 1;
    for (const child of Object.values(value)) {
      if (typeof child === 'object' && child !== null) depth = Math.max(depth, (depths.get(child) ?? 1) + 1);
    }
    if (depth > maxDepth) throw new JsonTooDeepError(`JSON request body is nested deeper than ${maxDepth} levels`);
    depths.set(value, depth);
    return value;
  };
}
