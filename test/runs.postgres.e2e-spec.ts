import { describeRuns } from './support/runs-suite';

describeRuns('postgres');
