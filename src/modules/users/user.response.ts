import { ApiProperty } from '@nestjs/swagger';
import { USER_ROLES, User, type UserRole } from './user.entity';

export class UserResponse {
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiProperty() email: string;
  @ApiProperty({ enum: USER_ROLES }) role: UserRole;
  @ApiProperty({ format: 'uuid' }) account_id: string;
  @ApiProperty() created_at: string;

  static from(user: User): UserResponse {
    return { id: user.id, email: user.email, role: user.role, account_id: user.accountId, created_at: user.createdAt.toISOString() };
  }
}
