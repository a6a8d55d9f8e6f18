import { MigrationInterface, QueryRunner } from "typeorm";

/** Where a sandbox being created stands (pull, unpack, build step i of n, start); null once it left `creating`. */
export class SandboxProgress1796900000000 implements MigrationInterface {
    name = 'SandboxProgress1796900000000'

    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`ALTER TABLE "sandbox" ADD "progress" jsonb`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`ALTER TABLE "sandbox" DROP COLUMN "progress"`);
    }

}
