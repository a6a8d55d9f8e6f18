import { MigrationInterface, QueryRunner } from "typeorm";

/**
 * Every run event inserted notifies channel `run_event` with `<run id>:<seq>` (at commit), so that
 * every instance sharing the database can serve every run's live stream (see RunEventFeed).
 */
export class RunEventNotify1796600000000 implements MigrationInterface {
    name = 'RunEventNotify1796600000000'

    public async up(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`CREATE FUNCTION "notify_run_event"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('run_event', NEW.run_id::text || ':' || NEW.seq::text); RETURN NULL; END $$`);
        await queryRunner.query(`CREATE TRIGGER "trg_run_event_notify" AFTER INSERT ON "run_event" FOR EACH ROW EXECUTE FUNCTION "notify_run_event"()`);
    }

    public async down(queryRunner: QueryRunner): Promise<void> {
        await queryRunner.query(`DROP TRIGGER "trg_run_event_notify" ON "run_event"`);
        await queryRunner.query(`DROP FUNCTION "notify_run_event"()`);
    }

}
