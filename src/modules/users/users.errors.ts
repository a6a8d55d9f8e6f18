import { ConflictError, InvalidInputError } from '../../common/domain-error';

export class EmailTakenError extends ConflictError {
  constructor() {
    super('A user with this email already exists');
  }
}

export class UnknownAccountError extends InvalidInputError {
  constructor() {
    super('account_id does not name an existing account');
  }
}
