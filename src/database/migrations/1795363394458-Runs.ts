import { MigrationInterface, QueryRunner } from "typeorm";

export class Runs1795363394458 implements MigrationInterface {
    name = 'Runs1795363394458'

    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`CREATE TABLE "run" ("id" uuid NOT NULL DEFAULT gen_random_uuid(), "sandbox_id" uuid NOT NULL, "account_id" uuid NOT NULL, "created_by" uuid NOT NULL, "prompt" text NOT NULL, "options" jsonb NOT NULL, "status" character varying(16) NOT NULL, "session_id" character varying(128), "exit_code" integer, "result" text, "total_cost_usd" double precision, "usage" jsonb, "num_turns" integer, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "started_at" TIMESTAMP WITH TIME ZONE, "finished_at" TIMESTAMP WITH TIME ZONE, "error" text, CONSTRAINT "pk_run" PRIMARY KEY ("id"))`);
        await queryRunner.query(`CREATE UNIQUE INDEX "uq_run_active_per_sandbox" ON "run"  ("sandbox_id") WHERE "status" IN ('queued', 'running')`);
        await queryRunner.query(`CREATE INDEX "ix_run_account_id_created_at" ON "run"  ("account_id", "created_at") `);
        await queryRunner.query(`CREATE INDEX "ix_run_sandbox_id_created_at" ON "run"  ("sandbox_id", "created_at") `);
        await queryRunner.query(`CREATE TABLE "run_event" ("run_id" uuid NOT NULL, "seq" integer NOT NULL, "type" character varying(32) NOT NULL, "data" json NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), CONSTRAINT "pk_run_event" PRIMARY KEY ("run_id", "seq"))`);
        await queryRunner.query(`ALTER TABLE "run" ADD CONSTRAINT "fk_run_sandbox" FOREIGN KEY ("sandbox_id") REFERENCES "sandbox"("id") ON DELETE CASCADE ON UPDATE NO ACTION`);
        await queryRunner.query(`ALTER TABLE "run_event" ADD CONSTRAINT "fk_run_event_run" FOREIGN KEY ("run_id") REFERENCES "run"("id") ON DELETE CASCADE ON UPDATE NO ACTION`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`ALTER TABLE "run_event" DROP CONSTRAINT "fk_run_event_run"`);
        await queryRunner.query(`ALTER TABLE "run" DROP CONSTRAINT "fk_run_sandbox"`);
        await queryRunner.query(`DROP TABLE "run_event"`);
        await queryRunner.query(`DROP INDEX "public"."ix_run_sandbox_id_created_at"`);
        await queryRunner.query(`DROP INDEX "public"."ix_run_account_id_created_at"`);
        await queryRunner.query(`DROP INDEX "public"."uq_run_active_per_sandbox"`);
        await queryRunner.query(`DROP TABLE "run"`);
    }

}
