import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsEmail, IsInt, IsNotEmpty, IsOptional, IsString, Max, MaxLength, Min } from 'class-validator';
import { ApiToken } from './api-token.entity';
import { AuthenticatedUser } from './authenticated-user';

export class LoginDto {
  @ApiProperty({ example: 'admin@example.com' })
  @IsEmail()
  @MaxLength(320)
  email: string;

  @ApiProperty({ writeOnly: true })
  @IsString()
  @IsNotEmpty()
  @MaxLength(200)
  password: string;
}

export class CreateApiTokenDto {
  @ApiProperty({ example: 'ci-pipeline', maxLength: 100 })
  @IsString()
  @IsNotEmpty()
  @MaxLength(100)
  name: string;

  @ApiPropertyOptional({ minimum: 1, maximum: 3650, description: 'Omitted = the token does not expire' })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(3650)
  expires_in_days?: number;
}

export class LoginResponse {
  @ApiProperty() access_token: string;
  @ApiProperty({ enum: ['Bearer'] }) token_type: 'Bearer';
  @ApiProperty({ description: 'Seconds until the access token expires' }) expires_in: number;
}

export class ApiTokenResponse {
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiProperty() name: string;
  @ApiProperty({ description: 'The first characters of the token, to recognise it' }) prefix: string;
  @ApiProperty() created_at: string;
  @ApiProperty({ nullable: true, type: String }) last_used_at: string | null;
  @ApiProperty({ nullable: true, type: String }) expires_at: string | null;

  static from(token: ApiToken): ApiTokenResponse {
    return {
      id: token.id,
      name: token.name,
      prefix: token.prefix,
      created_at: token.createdAt.toISOString(),
      last_used_at: token.lastUsedAt?.toISOString() ?? null,
      expires_at: token.expiresAt?.toISOString() ?? null,
    };
  }
}

export class CreatedApiTokenResponse extends ApiTokenResponse {
  @ApiProperty({ description: 'The token itself; shown only in this answer' }) token: string;
}

export class MeResponse {
  @ApiProperty({ format: 'uuid' }) id: string;
  @ApiProperty() email: string;
  @ApiProperty({ enum: ['admin', 'member'] }) role: string;
  @ApiProperty({ format: 'uuid' }) account_id: string;

  static from(user: AuthenticatedUser): MeResponse {
    return { id: user.id, email: user.email, role: user.role, account_id: user.accountId };
  }
}
