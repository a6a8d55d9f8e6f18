import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { Observable, Subject } from 'rxjs';
import { DataSource } from 'typeorm';
import type { PostgresDriver } from 'typeorm/driver/postgres/PostgresDriver';
import { AppConfig } from '../../config/app-config';

/** The channel a trigger on `run_event` notifies with `<run id>:<seq>` at every insert (migration RunEventNotify…). */
export const RUN_EVENT_CHANNEL = 'run_event';
const RECONNECT_MS = 1_000;

interface ListeningClient {
  query(sql: string): Promise<unknown>;
  on(event: 'notification', listener: (message: { channel: string; payload?: string }) => void): unknown;
  on(event: 'error' | 'end', listener: (error?: Error) => void): unknown;
  removeAllListeners(): unknown;
}

/**
 * Tells this instance that a run has new events, wherever they were written: by this instance
 * (signal()) or by another one sharing the PostgreSQL database (a LISTEN on the trigger's channel,
 * over one connection of its own). Subscribers then read the rows: the database stays the one
 * source of every event. With the embedded PGlite there is one instance, and signal() is all.
 */
@Injectable()
export class RunEventFeed implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger(RunEventFeed.name);
  private readonly watched = new Map<string, { subject: Subject<void>; watchers: number }>();
  /** Emits when notifications may have been missed (the listening connection was lost): everyone re-reads. */
  private readonly resync = new Subject<void>();
  private readonly closing = new Subject<void>();
  private listener?: { client: ListeningClient; release: () => void };
  private reconnecting = false;
  private stopped = false;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    private readonly config: AppConfig,
  ) {}

  async onModuleInit(): Promise<void> {
    if (this.config.database.url) await this.listen();
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    this.closing.next();
    this.stopListening();
  }

  /** Emits (with no value) whenever the run may have new events; completes when the service stops. */
  changes(runId: string): Observable<void> {
    return new Observable<void>((subscriber) => {
      let entry = this.watched.get(runId);
      if (!entry) this.watched.set(runId, (entry = { subject: new Subject<void>(), watchers: 0 }));
      entry.watchers++;
      const own = entry;
      const subscriptions = [own.subject.subscribe(subscriber), this.resync.subscribe(() => subscriber.next()), this.closing.subscribe(() => subscriber.complete())];
      return () => {
        for (const subscription of subscriptions) subscription.unsubscribe();
        if (--own.watchers === 0 && this.watched.get(runId) === own) this.watched.delete(runId);
      };
    });
  }

  /** The run has a new event (written here). */
  signal(runId: string): void {
    this.watched.get(runId)?.subject.next();
  }

  private async listen(): Promise<void> {
    try {
      const [client, release] = (await (this.dataSource.driver as PostgresDriver).obtainMasterConnection()) as [ListeningClient, () => void];
      client.on('notification', (message) => {
        const runId = message.channel === RUN_EVENT_CHANNEL ? message.payload?.split(':')[0] : undefined;
        if (runId) this.signal(runId);
      });
      client.on('error', (error) => this.lost(error));
      client.on('end', () => this.lost());
      await client.query(`LISTEN ${RUN_EVENT_CHANNEL}`);
      this.listener = { client, release };
      this.resync.next();
    } catch (error) {
      this.lost(error as Error);
    }
  }

  /** Notifications sent meanwhile are lost: listen again, then have every subscriber re-read. */
  private lost(error?: Error): void {
    this.stopListening(error);
    if (this.stopped || this.reconnecting) return;
    this.reconnecting = true;
    this.logger.warn({ err: error }, `not listening for run events of other instances; retrying in ${RECONNECT_MS} ms`);
    setTimeout(() => {
      this.reconnecting = false;
      void this.listen();
    }, RECONNECT_MS).unref();
  }

  private stopListening(error?: Error): void {
    const listener = this.listener;
    this.listener = undefined;
    if (!listener) return;
    listener.client.removeAllListeners();
    (listener.release as (error?: Error | boolean) => void)(error ?? true);
  }
}
