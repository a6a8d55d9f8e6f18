import { MigrationInterface, QueryRunner } from "typeorm";

export class Sandboxes1795363254788 implements MigrationInterface {
    name = 'Sandboxes1795363254788'

    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`CREATE TABLE "sandbox" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "account_id" uuid NOT NULL, "created_by" uuid NOT NULL, "provider" character varying(16) NOT NULL, "provider_sandbox_id" character varying(128), "status" character varying(16) NOT NULL, "config" jsonb NOT NULL, "limits" jsonb, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "terminated_at" TIMESTAMP WITH TIME ZONE, "last_activity_at" TIMESTAMP WITH TIME ZONE NOT NULL, "exit_reason" character varying(64), "error" text, CONSTRAINT "pk_sandbox" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE INDEX "ix_sandbox_status" ON "sandbox"  ("status") `);
        await queryRunner.query(`CREATE INDEX "ix_sandbox_account_id_created_at" ON "sandbox"  ("account_id", "created_at") `);
        await queryRunner.query(`ALTER TABLE "sandbox" ADD CONSTRAINT "fk_sandbox_account" FOREIGN KEY ("account_id") REFERENCES "account"("id") ON DELETE CASCADE ON UPDATE NO ACTION`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`ALTER TABLE "sandbox" DROP CONSTRAINT "fk_sandbox_account"`);
        await queryRunner.query(`DROP INDEX "public"."ix_sandbox_account_id_created_at"`);
        await queryRunner.query(`DROP INDEX "public"."ix_sandbox_status"`);
        await queryRunner.query(`DROP TABLE "sandbox"`);
    }

}
