import { Check, Column, CreateDateColumn, Entity, Index, JoinColumn, ManyToOne, PrimaryGeneratedColumn, type Relation } from 'typeorm';
import { Account } from './account.entity';

import { USER_ROLES, type UserRole } from '../../common/user-role';

export { USER_ROLES, type UserRole };

@Entity({ name: 'user' })
@Check('ck_user_role', `"role" IN ('admin', 'member')`)
@Index('uq_user_email', ['email'], { unique: true })
@Index('ix_user_account_id', ['accountId'])
export class User {
  @PrimaryGeneratedColumn('uuid', { primaryKeyConstraintName: 'pk_user' })
  id: string;

  @Column({ type: 'varchar', length: 320 })
  email: string;

  @Column({ type: 'varchar', length: 255 })
  passwordHash: string;

  @Column({ type: 'varchar', length: 16 })
  role: UserRole;

  @Column({ type: 'uuid' })
  accountId: string;

  @ManyToOne(() => Account, { onDelete: 'CASCADE' })
  @JoinColumn({ name: 'account_id', foreignKeyConstraintName: 'fk_user_account' })
  account?: Relation<Account>;

  @CreateDateColumn({ type: 'timestamptz' })
  createdAt: Date;
}
