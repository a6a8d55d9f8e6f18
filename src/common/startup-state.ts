import { Global, Injectable, Logger, Module } from '@nestjs/common';

export interface StartupStatus {
  ready: boolean;
  /** Start-up tasks still running, by name. */
  pending: string[];
  /** Start-up tasks that failed: the instance stays not ready. */
  failed: { task: string; error: string }[];
}

/**
 * Whether this instance has finished its start-up work (re-attaching sandboxes, resuming runs…):
 * what `GET /api/health/ready` answers. Ready once the application's bootstrap hooks have all run
 * (`markReady`, from the root module's hook, which Nest calls after every other module's) and every
 * task registered with `register` has succeeded. Work that goes on in the background after start-up
 * registers itself, so the instance is ready only when it is done.
 */
@Injectable()
export class StartupState {
  private readonly logger = new Logger(StartupState.name);
  private readonly startedAt = Date.now();
  private bootstrapped = false;
  private announced = false;
  private readonly pending = new Map<symbol, string>();
  private readonly failed: { task: string; error: string }[] = [];

  /** Keeps the instance not ready until `work` succeeds (not ready at all if it fails); answers `work` itself. */
  register<T>(task: string, work: Promise<T>): Promise<T> {
    const key = Symbol(task);
    this.pending.set(key, task);
    this.announced = false;
    work.then(
      () => {
        this.pending.delete(key);
        this.announceIfReady();
      },
      (error: unknown) => {
        this.pending.delete(key);
        this.failed.push({ task, error: error instanceof Error ? error.message : String(error) });
        this.logger.error({ task, error: error instanceof Error ? error.message : String(error) }, 'a start-up task failed: this instance stays not ready');
      },
    );
    return work;
  }

  /** Every bootstrap hook has run: ready as soon as no registered task is left. */
  markReady(): void {
    this.bootstrapped = true;
    this.announceIfReady();
  }

  isReady(): boolean {
    return this.bootstrapped && this.pending.size === 0 && this.failed.length === 0;
  }

  status(): StartupStatus {
    return { ready: this.isReady(), pending: [...this.pending.values()], failed: [...this.failed] };
  }

  private announceIfReady(): void {
    if (this.announced || !this.isReady()) return;
    this.announced = true;
    this.logger.log({ startup_ms: Date.now() - this.startedAt }, 'start-up work finished: this instance is ready');
  }
}

/** StartupState for every module (feature modules register their start-up work in it). */
@Global()
@Module({ providers: [StartupState], exports: [StartupState] })
export class StartupModule {}
