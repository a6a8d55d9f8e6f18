import { MigrationInterface, QueryRunner } from "typeorm";

export class DurableRuns1796500000000 implements MigrationInterface {
    name = 'DurableRuns1796500000000'

    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`ALTER TABLE "run_event" ADD "log_stream" character varying(6)`);
        await queryRunner.query(`ALTER TABLE "run_event" ADD "log_offset" bigint`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`ALTER TABLE "run_event" DROP COLUMN "log_offset"`);
        await queryRunner.query(`ALTER TABLE "run_event" DROP COLUMN "log_stream"`);
    }

}
