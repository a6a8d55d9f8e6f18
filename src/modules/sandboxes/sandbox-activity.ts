import { Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Repository } from 'typeorm';
import { Sandbox } from './sandbox.entity';

/**
 * Work in progress in a sandbox on this instance: active runs, execs, open event streams. A sandbox
 * with any is never idle; its idle clock restarts when the last one ends.
 */
@Injectable()
export class SandboxActivity {
  private readonly inFlight = new Map<string, number>();
  private readonly endingListeners = new Set<EndingListener>();

  constructor(@InjectRepository(Sandbox) private readonly sandboxes: Repository<Sandbox>) {}

  /** Marks work as begun; the returned function (idempotent) ends it and records the activity. */
  begin(sandboxId: string): () => Promise<void> {
    this.inFlight.set(sandboxId, (this.inFlight.get(sandboxId) ?? 0) + 1);
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
