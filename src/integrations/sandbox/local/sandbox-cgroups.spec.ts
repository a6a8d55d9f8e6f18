import { ownCgroupPaths } from './sandbox-cgroups';

describe('ownCgroupPaths', () => {
  it('reads the v1 path of each controller, also from combined hierarchies, ignoring the others', () => {
    const procSelfCgroup = ['12:pids:/', '11:cpu,cpuacct:/system.slice/app.service', '4:memory:/process_api/abc', '1:name=systemd:/x', '0::/', ''].join('\n');

    expect(ownCgroupPaths(procSelfCgroup)).toEqual({ pids: '/', cpu: '/system.slice/app.service', memory: '/process_api/abc' });
  });

  it('finds nothing on a cgroup v2 only host', () => {
    expect(ownCgroupPaths('0::/user.slice\n')).toEqual({});
  });
});
