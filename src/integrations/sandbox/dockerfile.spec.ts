import { InvalidInputError } from '../../common/domain-error';
import { expandEnvReferences, InvalidDockerfileCommandError, parseDockerfileCommands } from './dockerfile';

describe('parseDockerfileCommands', () => {
  it('parses ENV, WORKDIR and RUN lines with their indexes', () => {
    const steps = parseDockerfileCommands(['ENV A=1', 'WORKDIR /app', 'RUN apt-get update && apt-get install -y jq']);

    expect(steps).toEqual([
      { kind: 'env', index: 0, instruction: 'ENV A=1', variables: [['A', '1']] },
      { kind: 'workdir', index: 1, instruction: 'WORKDIR /app', path: '/app' },
      { kind: 'run', index: 2, instruction: 'RUN apt-get update && apt-get install -y jq', command: 'apt-get update && apt-get install -y jq' },
    ]);
  });

  it('reads several KEY=VALUE pairs with quotes and escapes', () => {
    const [step] = parseDockerfileCommands([`ENV A="hello world" B='x y' C=plain\\ text D=`]);

    expect(step).toMatchObject({ variables: [['A', 'hello world'], ['B', 'x y'], ['C', 'plain text'], ['D', '']] });
  });

  it('reads the legacy ENV KEY VALUE form, keeping the rest of the line as the value', () => {
    const [step] = parseDockerfileCommands(['env GREETING hello  there = friend']);

    expect(step).toMatchObject({ kind: 'env', variables: [['GREETING', 'hello  there = friend']] });
  });

  it('accepts lowercase keywords and skips blank lines and comments without shifting indexes', () => {
    const steps = parseDockerfileCommands(['# base tools', '', 'run echo hi']);

    expect(steps).toEqual([{ kind: 'run', index: 2, instruction: 'run echo hi', command: 'echo hi' }]);
  });

  it('refuses other instructions, naming the line and the instruction', () => {
    const parse = () => parseDockerfileCommands(['RUN true', 'ENV A=1', 'COPY . /app']);

    expect(parse).toThrow(InvalidDockerfileCommandError);
    expect(parse).toThrow('dockerfile_commands[2]: unsupported instruction COPY');
  });

  it.each([
    ['RUN', 'dockerfile_commands[0]: RUN needs a command'],
    ['WORKDIR   ', 'dockerfile_commands[0]: WORKDIR needs a path'],
    ['ENV A', 'dockerfile_commands[0]: ENV expects KEY=VALUE, got A'],
    ['ENV 1A=x', 'dockerfile_commands[0]: invalid environment variable name 1A'],
    ['ENV A="open', 'dockerfile_commands[0]: unterminated quote'],
  ])('refuses the malformed line %j', (line, message) => {
    const parse = () => parseDockerfileCommands([line]);

    expect(parse).toThrow(message);
  });

  it('reports malformed lines as invalid input (HTTP 400)', () => {
    let error: unknown;
    try {
      parseDockerfileCommands(['FROM alpine']);
    } catch (caught) {
      error = caught;
    }

    expect(error).toBeInstanceOf(InvalidInputError);
    expect((error as InvalidInputError).kind).toBe('invalid');
  });
});

describe('expandEnvReferences', () => {
  it('substitutes $NAME and ${NAME}, unknown names becoming empty', () => {
    const expanded = expandEnvReferences('/opt/tool/bin:$PATH:${HOME}/bin:$MISSING.', { PATH: '/usr/bin', HOME: '/root' });

    expect(expanded).toBe('/opt/tool/bin:/usr/bin:/root/bin:.');
  });
});
