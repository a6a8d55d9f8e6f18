import { Body, Controller, Delete, Get, HttpCode, HttpStatus, Param, ParseUUIDPipe, Post, UseGuards } from '@nestjs/common';
import { ApiNoContentResponse, ApiNotFoundResponse, ApiOperation, ApiTags, ApiTooManyRequestsResponse, ApiUnauthorizedResponse } from '@nestjs/swagger';
import { ThrottlerGuard } from '@nestjs/throttler';
import { ApiEnvelope } from '../../common/api-envelope.decorator';
import { ApiTokensService } from './api-tokens.service';
import { ApiTokenResponse, CreateApiTokenDto, CreatedApiTokenResponse, LoginDto, LoginResponse, MeResponse } from './auth.dto';
import { Authenticated, Public } from '../../common/auth-policy.decorator';
import { AuthService } from './auth.service';
import { AuthenticatedUser, CurrentUser } from './authenticated-user';

@ApiTags('auth')
@Controller('api/auth')
export class AuthController {
  constructor(
    private readonly auth: AuthService,
    private readonly apiTokens: ApiTokensService,
  ) {}

  @Post('login')
  @Public()
  @UseGuards(ThrottlerGuard)
  @HttpCode(HttpStatus.OK)
  @ApiOperation({ operationId: 'login', summary: 'Exchange email and password for a JWT' })
  @ApiEnvelope(LoginResponse)
  @ApiUnauthorizedResponse({ description: 'Invalid email or password' })
  @ApiTooManyRequestsResponse({ description: 'Too many login attempts; retry later' })
  async login(@Body() dto: LoginDto): Promise<LoginResponse> {
    const { accessToken, expiresIn } = await this.auth.login(dto.email, dto.password);
    return { access_token: accessToken, token_type: 'Bearer', expires_in: expiresIn };
  }

  @Get('me')
  @Authenticated()
  @ApiOperation({ operationId: 'getCurrentUser', summary: 'The user behind the bearer credential' })
  @ApiEnvelope(MeResponse)
  me(@CurrentUser() user: AuthenticatedUser): MeResponse {
    return MeResponse.from(user);
  }

  @Post('tokens')
  @Authenticated()
  @ApiOperation({ operationId: 'createApiToken', summary: 'Create an API token; its value is shown only in this answer' })
  @ApiEnvelope(CreatedApiTokenResponse, { status: HttpStatus.CREATED })
  async createToken(@CurrentUser() user: AuthenticatedUser, @Body() dto: CreateApiTokenDto): Promise<CreatedApiTokenResponse> {
    const { record, token } = await this.apiTokens.issue(user.id, dto.name, dto.expires_in_days);
    return { ...ApiTokenResponse.from(record), token };
  }

  @Get('tokens')
  @Authenticated()
  @ApiOperation({ operationId: 'listApiTokens', summary: "The caller's API tokens (never their values)" })
  @ApiEnvelope(ApiTokenResponse, { isArray: true })
  async listTokens(@CurrentUser() user: AuthenticatedUser): Promise<ApiTokenResponse[]> {
    return (await this.apiTokens.listForUser(user.id)).map(ApiTokenResponse.from);
  }

  @Delete('tokens/:id')
  @Authenticated()
  @HttpCode(HttpStatus.NO_CONTENT)
  @ApiOperation({ operationId: 'revokeApiToken', summary: 'Revoke one of the caller’s API tokens' })
  @ApiNoContentResponse({ description: 'Revoked' })
  @ApiNotFoundResponse({ description: 'No such token for this user' })
  async revokeToken(@CurrentUser() user: AuthenticatedUser, @Param('id', new ParseUUIDPipe()) id: string): Promise<void> {
    await this.apiTokens.revoke(user.id, id);
  }
}
