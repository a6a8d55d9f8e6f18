import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsEmail, IsIn, IsOptional, IsString, IsUUID, MaxLength, MinLength } from 'class-validator';
import { USER_ROLES, type UserRole } from './user.entity';

export class CreateUserDto {
  @ApiProperty({ example: 'dev@example.com' })
  @IsEmail()
  @MaxLength(320)
  email: string;

  @ApiProperty({ minLength: 8, maxLength: 200, writeOnly: true })
  @IsString()
  @MinLength(8)
  @MaxLength(200)
  password: string;

  @ApiPropertyOptional({ enum: USER_ROLES, default: 'member' })
  @IsOptional()
  @IsIn(USER_ROLES)
  role?: UserRole;

  @ApiPropertyOptional({ format: 'uuid', description: 'Join an existing account; omitted = a new account for this user' })
  @IsOptional()
  @IsUUID()
  account_id?: string;
}
