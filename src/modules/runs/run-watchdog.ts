/** Fires once when the run has been silent for idleMs, or has lasted totalMs, whichever comes first. */
export class RunWatchdog {
  private idle: NodeJS.Timeout;
  private readonly overall: NodeJS.Timeout;

  constructor(
    private readonly limits: { idleMs: number; totalMs: number },
    private readonly fire: (why: 'idle' | 'timeout') => void,
  ) {
    this.idle = setTimeout(() => this.expire('idle'), limits.idleMs);
    this.overall = setTimeout(() => this.expire('timeout'), limits.totalMs);
  }

  activity(): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => this.expire('idle'), this.limits.idleMs);
  }

  stop(): void {
    clearTimeout(this.idle);
    clearTimeout(this.overall);
  }

  private expire(why: 'idle' | 'timeout'): void {
    this.stop();
    this.fire(why);
  }
}
