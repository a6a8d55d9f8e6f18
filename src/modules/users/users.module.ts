import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { PasswordHasher } from './password-hasher';
import { Account } from './account.entity';
import { AdminBootstrapService } from './admin-bootstrap.service';
import { User } from './user.entity';
import { UsersController } from './users.controller';
import { UsersService } from './users.service';

@Module({
  imports: [TypeOrmModule.forFeature([User, Account])],
  controllers: [UsersController],
  providers: [UsersService, PasswordHasher, AdminBootstrapService],
  exports: [UsersService, PasswordHasher],
})
export class UsersModule {}
