import { assertTransition, IllegalSandboxTransitionError, isActive, statusesLeadingTo } from './sandbox.state-machine';

describe('sandbox state machine', () => {
  it.each([
    ['creating', 'running'],
    ['creating', 'terminated'],
    ['creating', 'error'],
    ['running', 'terminated'],
    ['running', 'error'],
  ] as const)('lets a %s sandbox become %s', (from, to) => {
    expect(() => assertTransition(from, to)).not.toThrow();
  });

  it.each([
    ['running', 'creating'],
    ['terminated', 'running'],
    ['terminated', 'terminated'],
    ['error', 'terminated'],
  ] as const)('refuses to let a %s sandbox become %s', (from, to) => {
    expect(() => assertTransition(from, to)).toThrow(IllegalSandboxTransitionError);
  });

  it('knows which statuses lead where and which are active', () => {
    expect(statusesLeadingTo('running')).toEqual(['creating']);
    expect(statusesLeadingTo('terminated')).toEqual(['creating', 'running']);
    expect(['creating', 'running', 'terminated', 'error'].filter((status) => isActive(status as never))).toEqual(['creating', 'running']);
  });
});
