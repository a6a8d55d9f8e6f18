import { Injectable, Logger } from '@nestjs/common';
import { InjectDataSource, InjectRepository } from '@nestjs/typeorm';
import { DataSource, Repository } from 'typeorm';
import { PasswordHasher } from './password-hasher';
import { Account } from './account.entity';
import { User, UserRole } from './user.entity';
import { EmailTakenError, UnknownAccountError } from './users.errors';

const UNIQUE_VIOLATION = '23505';

export interface NewUser {
  email: string;
  password: string;
  role?: UserRole;
  accountId?: string;
}

@Injectable()
export class UsersService {
  private readonly logger = new Logger(UsersService.name);

  constructor(
    @InjectRepository(User) private readonly users: Repository<User>,
    @InjectRepository(Account) private readonly accounts: Repository<Account>,
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly hasher: PasswordHasher,
  ) {}

  /** Creates a user; without an account id the user gets an account of their own. */
  async create(input: NewUser): Promise<User> {
    const email = normalizeEmail(input.email);
    if (await this.users.existsBy({ email })) throw new EmailTakenError();
    if (input.accountId && !(await this.accounts.existsBy({ id: input.accountId }))) throw new UnknownAccountError();
    const passwordHash = await this.hasher.hash(input.password);
    const user = await this.dataSource
      .transaction(async (manager) => {
        const accountId = input.accountId ?? (await manager.save(manager.create(Account, { name: email }))).id;
        return manager.save(manager.create(User, { email, passwordHash, role: input.role ?? 'member', accountId }));
      })
      .catch((error: { code?: string }) => {
        // A concurrent creation with the same email won the race to the unique index.
        throw error.code === UNIQUE_VIOLATION ? new EmailTakenError() : error;
      });
    this.logger.log({ user_id: user.id, account_id: user.accountId, role: user.role }, 'user created');
    return user;
  }

  list(): Promise<User[]> {
    return this.users.find({ order: { createdAt: 'ASC' } });
  }

  findById(id: string): Promise<User | null> {
    return this.users.findOneBy({ id });
  }

  findByEmail(email: string): Promise<User | null> {
    return this.users.findOneBy({ email: normalizeEmail(email) });
  }

  count(): Promise<number> {
    return this.users.count();
  }
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}
