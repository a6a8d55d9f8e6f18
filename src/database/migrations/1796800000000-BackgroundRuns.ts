import { MigrationInterface, QueryRunner } from "typeorm";

export class BackgroundRuns1796800000000 implements MigrationInterface {
    name = 'BackgroundRuns1796800000000'

    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`CREATE TABLE "background_run" ("name" character varying(100) NOT NULL, "passes" bigint NOT NULL DEFAULT '0', "instance" character varying(200) NOT NULL, "last_started_at" TIMESTAMP WITH TIME ZONE NOT NULL, "last_finished_at" TIMESTAMP WITH TIME ZONE, CONSTRAINT "pk_background_run" PRIMARY KEY ("name"))`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`DROP TABLE "background_run"`);
    }

}
