import { fstatSync, statSync } from 'node:fs';
import { InheritedFdShield } from './inherited-fds';

describe('InheritedFdShield', () => {
  it('covers each leaking descriptor beyond the given stdio with /dev/null', () => {
    const stdio = new InheritedFdShield([4, 7]).stdio(['pipe', 'pipe', 'pipe']);

    expect(stdio).toHaveLength(8);
    expect(stdio.slice(0, 4)).toEqual(['pipe', 'pipe', 'pipe', 'ignore']);
    expect(stdio[4]).toBe(stdio[7]);
    expect(fstatSync(stdio[4] as number).rdev).toBe(statSync('/dev/null').rdev);
  });

  it('leaves stdio as it is when nothing leaks or the descriptor is already replaced by a pipe', () => {
    expect(new InheritedFdShield([]).stdio(['pipe', 'pipe', 'pipe'])).toEqual(['pipe', 'pipe', 'pipe']);
    expect(new InheritedFdShield([3]).stdio(['pipe', 'pipe', 'pipe', 'pipe'])).toEqual(['pipe', 'pipe', 'pipe', 'pipe']);
  });
});
