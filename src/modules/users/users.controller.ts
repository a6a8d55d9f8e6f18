import { Body, Controller, Get, HttpStatus, Post } from '@nestjs/common';
import { ApiBadRequestResponse, ApiConflictResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { ApiEnvelope } from '../../common/api-envelope.decorator';
import { AdminOnly } from '../../common/auth-policy.decorator';
import { CreateUserDto } from './create-user.dto';
import { UserResponse } from './user.response';
import { UsersService } from './users.service';

@ApiTags('users')
@Controller('api/users')
@AdminOnly()
export class UsersController {
  constructor(private readonly users: UsersService) {}

  @Post()
  @ApiOperation({ operationId: 'createUser', summary: 'Create a user (admin only); without account_id the user gets a new account' })
  @ApiEnvelope(UserResponse, { status: HttpStatus.CREATED })
  @ApiBadRequestResponse({ description: 'Invalid fields or unknown account_id' })
  @ApiConflictResponse({ description: 'Email already in use' })
  async create(@Body() dto: CreateUserDto): Promise<UserResponse> {
    const user = await this.users.create({ email: dto.email, password: dto.password, role: dto.role, accountId: dto.account_id });
    return UserResponse.from(user);
  }

  @Get()
  @ApiOperation({ operationId: 'listUsers', summary: 'List all users (admin only)' })
  @ApiEnvelope(UserResponse, { isArray: true })
  async list(): Promise<UserResponse[]> {
    return (await this.users.list()).map(UserResponse.from);
  }
}
