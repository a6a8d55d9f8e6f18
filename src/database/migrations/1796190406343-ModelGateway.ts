import { MigrationInterface, QueryRunner } from "typeorm";

export class ModelGateway1796190406343 implements MigrationInterface {
    name = 'ModelGateway1796190406343'

    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`CREATE TABLE "model_gateway_token" ("run_id" uuid NOT NULL, "token_hash" character(64) NOT NULL, "created_at" TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(), "revoked_at" TIMESTAMP WITH TIME ZONE, "requests" bigint NOT NULL DEFAULT '0', "input_tokens" bigint NOT NULL DEFAULT '0', "output_tokens" bigint NOT NULL DEFAULT '0', "cache_creation_input_tokens" bigint NOT NULL DEFAULT '0', "cache_read_input_tokens" bigint NOT NULL DEFAULT '0', CONSTRAINT "pk_model_gateway_token" PRIMARY KEY ("run_id"))`);
        await queryRunner.query(`CREATE UNIQUE INDEX "uq_model_gateway_token_token_hash" ON "model_gateway_token"  ("token_hash") `);
        await queryRunner.query(`ALTER TABLE "model_gateway_token" ADD CONSTRAINT "fk_model_gateway_token_run" FOREIGN KEY ("run_id") REFERENCES "run"("id") ON DELETE CASCADE ON UPDATE NO ACTION`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`ALTER TABLE "model_gateway_token" DROP CONSTRAINT "fk_model_gateway_token_run"`);
        await queryRunner.query(`DROP INDEX "public"."uq_model_gateway_token_token_hash"`);
        await queryRunner.query(`DROP TABLE "model_gateway_token"`);
    }

}
