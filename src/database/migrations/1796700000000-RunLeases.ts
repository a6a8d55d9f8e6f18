import { MigrationInterface, QueryRunner } from "typeorm";

export class RunLeases1796700000000 implements MigrationInterface {
    name = 'RunLeases1796700000000'

    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`ALTER TABLE "run" ADD "owner_id" character varying(128)`);
        await queryRunner.query(`ALTER TABLE "run" ADD "lease_expires_at" TIMESTAMP WITH TIME ZONE`);
        await queryRunner.query(`ALTER TABLE "run" ADD "cancel_requested_at" TIMESTAMP WITH TIME ZONE`);
        await queryRunner.query(`CREATE INDEX "ix_run_lease_expires_at_active" ON "run" ("lease_expires_at") WHERE "status" = 'running'`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`DROP INDEX "public"."ix_run_lease_expires_at_active"`);
        await queryRunner.query(`ALTER TABLE "run" DROP COLUMN "cancel_requested_at"`);
        await queryRunner.query(`ALTER TABLE "run" DROP COLUMN "lease_expires_at"`);
        await queryRunner.query(`ALTER TABLE "run" DROP COLUMN "owner_id"`);
    }

}
