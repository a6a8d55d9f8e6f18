// Nest 12 and the Modal SDK ship as ES modules; Node 20's require(esm) is not available inside
// Jest's module loader, so those packages are compiled to CommonJS by SWC like our own sources.
const esmPackages = ['@nestjs', 'modal', 'uuid', 'marked'];
const swc = [
  '@swc/jest',
  {
    jsc: {
      parser: { syntax: 'typescript', decorators: true },
      transform: { legacyDecorator: true, decoratorMetadata: true },
      target: 'es2022',
      keepClassNames: true,
    },
    module: { type: 'commonjs' },
    sourceMaps: 'inline',
  },
];
const common = {
  transform: { '^.+\\.(t|j|mj)s$': swc },
  transformIgnorePatterns: [`/node_modules/(?!(${esmPackages.join('|')})/)`],
  testEnvironment: 'node',
  testTimeout: 120_000,
};
// e2e tests boot the real app, sandboxes and the Claude CLI: individual steps take seconds.
module.exports = {
  testTimeout: 120_000,
  projects: [
    { ...common, displayName: 'unit', rootDir: '<rootDir>', testMatch: ['<rootDir>/src/**/*.spec.ts'] },
    { ...common, displayName: 'e2e', rootDir: '<rootDir>', testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'], slowTestThreshold: 30 },
  ],
};
