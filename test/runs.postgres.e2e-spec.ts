import { describeRuns } from './support/runs-suite';

// The database is what differs here; the engines are covered on pglite (runs.pglite, runs.modal).
describeRuns('postgres', ['local']);
