import { BackgroundRun } from '../common/background-run.entity';
import { ApiToken } from '../modules/auth/api-token.entity';
import { Account } from '../modules/users/account.entity';
import { Run } from '../modules/runs/run.entity';
import { RunEvent } from '../modules/runs/run-event.entity';
import { ModelGatewayToken } from '../modules/runs/model-gateway-token.entity';
import { Sandbox } from '../modules/sandboxes/sandbox.entity';
import { User } from '../modules/users/user.entity';

/** Every persisted entity; the migration CLI and the app share this list. */
export const ENTITIES = [Account, User, ApiToken, Sandbox, Run, RunEvent, ModelGatewayToken, BackgroundRun];
