import { describeRuns, describeRunsWithoutCredentials } from './support/runs-suite';

// The Modal engine runs the same suite on pglite in runs.modal.e2e-spec.ts (a file of its own, so
// that the two can run on separate workers).
describeRuns('pglite', ['local']);
describeRunsWithoutCredentials();
