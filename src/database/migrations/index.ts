import { Foundation1795362004383 } from './1795362004383-Foundation';
import { Sandboxes1795363254788 } from './1795363254788-Sandboxes';
import { Runs1795363394458 } from './1795363394458-Runs';
import { ModelGateway1796190406343 } from './1796190406343-ModelGateway';
import { DurableRuns1796500000000 } from './1796500000000-DurableRuns';
import { RunEventNotify1796600000000 } from './1796600000000-RunEventNotify';
import { RunLeases1796700000000 } from './1796700000000-RunLeases';
import { BackgroundRuns1796800000000 } from './1796800000000-BackgroundRuns';
import { SandboxProgress1796900000000 } from './1796900000000-SandboxProgress';

/** Migrations in the order they run; each is generated with `npm run migration:generate` and reviewed. */
export const MIGRATIONS: Function[] = [Foundation1795362004383, Sandboxes1795363254788, Runs1795363394458, ModelGateway1796190406343, DurableRuns1796500000000, RunEventNotify1796600000000, RunLeases1796700000000, BackgroundRuns1796800000000, SandboxProgress1796900000000];
