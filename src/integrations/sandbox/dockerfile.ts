import { InvalidInputError } from '../../common/domain-error';

/** One honoured Dockerfile line; `index` is its position in `dockerfile_commands`. */
export type DockerfileStep =
  | { kind: 'env'; index: number; instruction: string; variables: Array<[name: string, value: string]> }
  | { kind: 'workdir'; index: number; instruction: string; path: string }
  | { kind: 'run'; index: number; instruction: string; command: string };

export class InvalidDockerfileCommandError extends InvalidInputError {
  constructor(readonly index: number, reason: string) {
    super(`dockerfile_commands[${index}]: ${reason}`, { index });
  }
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Parses the Dockerfile lines a sandbox spec may carry: ENV, WORKDIR and RUN (shell form).
 * Blank lines and comments are skipped; anything else is refused naming the line.
 */
export function parseDockerfileCommands(lines: string[]): DockerfileStep[] {
  const steps: DockerfileStep[] = [];
  lines.forEach((line, index) => {
    const instruction = line.trim();
    if (instruction === '' || instruction.startsWith('#')) return;
    const [, keyword, rest = ''] = /^(\S+)\s*([\s\S]*)$/.exec(instruction)!;
    switch (keyword.toUpperCase()) {
      case 'ENV':
        steps.push({ kind: 'env', index, instruction, variables: parseEnvArguments(rest, index) });
        return;
      case 'WORKDIR':
        steps.push({ kind: 'workdir', index, instruction, path: requireArgument(rest, index, 'WORKDIR needs a path') });
        return;
      case 'RUN':
        steps.push({ kind: 'run', index, instruction, command: requireArgument(rest, index, 'RUN needs a command') });
        return;
      default:
        throw new InvalidDockerfileCommandError(index, `unsupported instruction ${keyword.toUpperCase()}`);
    }
  });
  return steps;
}

function requireArgument(rest: string, index: number, reason: string): string {
  if (rest.trim() === '') throw new InvalidDockerfileCommandError(index, reason);
  return rest.trim();
}

/** `ENV KEY=VALUE [KEY2="VALUE 2" ...]` or the legacy `ENV KEY VALUE`. */
function parseEnvArguments(rest: string, index: number): Array<[string, string]> {
  const legacy = /^([^\s=]+)\s+([\s\S]*)$/.exec(rest);
  const variables: Array<[string, string]> = legacy
    ? [[legacy[1], legacy[2]]]
    : splitWords(rest, index).map((word) => {
        const separator = word.indexOf('=');
        if (separator < 0) throw new InvalidDockerfileCommandError(index, `ENV expects KEY=VALUE, got ${word}`);
        return [word.slice(0, separator), word.slice(separator + 1)];
      });
  if (variables.length === 0) throw new InvalidDockerfileCommandError(index, 'ENV needs KEY=VALUE');
  for (const [name] of variables) {
    if (!ENV_NAME.test(name)) throw new InvalidDockerfileCommandError(index, `invalid environment variable name ${name}`);
  }
  return variables;
}

/** Splits on unquoted whitespace; quotes group words and are removed, a backslash escapes one character. */
function splitWords(text: string, index: number): string[] {
  const words: string[] = [];
  let current: string | null = null;
  let quote: '"' | "'" | null = null;
  for (let position = 0; position < text.length; position++) {
    const char = text[position];
    if (quote !== null) {
      if (char === quote) quote = null;
      else if (char === '\\' && quote === '"' && position + 1 < text.length) current += text[++position];
      else current += char;
    } else if (/\s/.test(char)) {
      if (current !== null) words.push(current);
      current = null;
    } else if (char === '"' || char === "'") {
      quote = char;
      current ??= '';
    } else if (char === '\\' && position + 1 < text.length) {
      current = (current ?? '') + text[++position];
    } else {
      current = (current ?? '') + char;
    }
  }
  if (quote !== null) throw new InvalidDockerfileCommandError(index, 'unterminated quote');
  if (current !== null) words.push(current);
  return words;
}

/** Dockerfile substitution in ENV values: `$NAME` and `${NAME}` take the value set so far, or ''. */
export function expandEnvReferences(value: string, env: Record<string, string>): string {
  return value.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_match, braced?: string, bare?: string) => env[(braced ?? bare)!] ?? '');
}
