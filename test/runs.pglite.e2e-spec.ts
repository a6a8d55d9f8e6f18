import { describeRuns, describeRunsWithoutCredentials } from './support/runs-suite';

describeRuns('pglite');
describeRunsWithoutCredentials();
