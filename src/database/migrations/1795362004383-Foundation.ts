import { MigrationInterface, QueryRunner } from "typeorm";

export class Foundation1795362004383 implements MigrationInterface {
    name = 'Foundation1795362004383'

    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`CREATE TABLE "account" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "name" character varying(200) NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "pk_account" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE TABLE "user" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "email" character varying(320) NOT NULL, "password_hash" character varying(255) NOT NULL, "role" character varying(16) NOT NULL, "account_id" uuid NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "ck_user_role" CHECK ("role" IN ('admin', 'member')), CONSTRAINT "pk_user" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE INDEX "ix_user_account_id" ON "user"  ("account_id") `);
        await queryRunner.query(`CREATE UNIQUE INDEX "uq_user_email" ON "user"  ("email") `);
        await queryRunner.query(`CREATE TABLE "api_token" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "user_id" uuid NOT NULL, "name" character varying(100) NOT NULL, "prefix" character varying(16) NOT NULL, "token_hash" character(64) NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "last_used_at" TIMESTAMP WITH TIME ZONE, "expires_at" TIMESTAMP WITH TIME ZONE, CONSTRAINT "pk_api_token" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE INDEX "ix_api_token_user_id" ON "api_token"  ("user_id") `);
        await queryRunner.query(`CREATE UNIQUE INDEX "uq_api_token_token_hash" ON "api_token"  ("token_hash") `);
        await queryRunner.query(`ALTER TABLE "user" ADD CONSTRAINT "fk_user_account" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE CASCADE ON UPDATE NO ACTION`);
        await queryRunner.query(`ALTER TABLE "api_token" ADD CONSTRAINT "fk_api_token_user" FOREIGN KEY ("user_id") REFERENCES "user"("id") ON DELETE CASCADE ON UPDATE NO ACTION`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`ALTER TABLE "api_token" DROP CONSTRAINT "fk_api_token_user"`);
        await queryRunner.query(`ALTER TABLE "user" DROP CONSTRAINT "fk_user_account"`);
        await queryRunner.query(`DROP INDEX "public"."uq_api_token_token_hash"`);
        await queryRunner.query(`DROP INDEX "public"."ix_api_token_user_id"`);
        await queryRunner.query(`DROP TABLE "api_token"`);
        await queryRunner.query(`DROP INDEX "public"."uq_user_email"`);
        await queryRunner.query(`DROP INDEX "public"."ix_user_account_id"`);
        await queryRunner.query(`DROP TABLE "user"`);
        await queryRunner.query(`DROP TABLE "account"`);
    }

}
