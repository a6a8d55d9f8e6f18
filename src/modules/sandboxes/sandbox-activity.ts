import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { In, Repository } from 'typeorm';
import { Sandbox } from './sandbox.entity';

/** How often work in progress here is written to its sandboxes' `last_activity_at`, for the other instances. */
const BUSY_HEARTBEAT_MS = 3_000;

/**
 * Work in progress in a sandbox on this instance: active runs, execs, open event streams, file
 * transfers. A sandbox with any is never idle; its idle clock restarts when the last one ends.
 * Other instances (whichever runs the sweep) see it through `last_activity_at`, which is kept
 * fresh while work goes on here (the shortest idle timeout is 10 s).
 */
@Injectable()
export class SandboxActivity implements OnModuleDestroy {
  private readonly inFlight = new Map<string, number>();
  private readonly endingListeners = new Set<EndingListener>();
  private heartbeat?: NodeJS.Timeout;

  constructor(@InjectRepository(Sandbox) private readonly sandboxes: Repository<Sandbox>) {}

  onModuleDestroy(): void {
    clearInterval(this.heartbeat);
  }

  private keepBusySandboxesFresh(): void {
    this.heartbeat ??= setInterval(() => {
      const busy = [...this.inFlight.keys()];
      if (busy.length === 0) return;
      this.sandboxes.update({ id: In(busy) }, { lastActivityAt: new Date() }).catch(() => undefined);
    }, BUSY_HEARTBEAT_MS).unref();
  }

  /** Marks work as begun; the returned function (idempotent) ends it and records the activity. */
  begin(sandboxId: string): () => Promise<void> {
    this.inFlight.set(sandboxId, (this.inFlight.get(sandboxId) ?? 0) + 1);
    this.keepBusySandboxesFresh();
    let ended = false;
    return async () => {
      if (ended) return;
      ended = true;
      const left = (this.inFlight.get(sandboxId) ?? 1) - 1;
      if (left > 0) this.inFlight.set(sandboxId, left);
      else this.inFlight.delete(sandboxId);
      await this.sandboxes.update({ id: sandboxId }, { lastActivityAt: new Date() });
    };
  }

  async during<T>(sandboxId: string, work: () => Promise<T>): Promise<T> {
    const end = this.begin(sandboxId);
    try {
      return await work();
    } finally {
      await end();
    }
  }

  isBusy(sandboxId: string): boolean {
    return this.inFlight.has(sandboxId);
  }

  /** Work that must end on its own terms before its sandbox does (a run ends `interrupted`, saying why). */
  onEnding(listener: EndingListener): void {
    this.endingListeners.add(listener);
  }

  /** The sandbox is about to be stopped by the service (lifetime, idle): what runs inside ends first. */
  async ending(sandboxId: string, reason: string): Promise<void> {
    await Promise.all([...this.endingListeners].map((listener) => listener(sandboxId, reason)));
  }
}

export type EndingListener = (sandboxId: string, reason: string) => Promise<void>;
