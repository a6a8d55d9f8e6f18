import { describeRuns } from './support/runs-suite';

// The runs suite of runs.pglite.e2e-spec.ts on the Modal engine (fake control plane, real SDK, the
// real Claude Code CLI in the sandbox).
describeRuns('pglite', ['modal']);
