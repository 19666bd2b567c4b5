/**
 * Rate-limited logging for events a client can cause at will (refused connections,
 * accept failures, stalled frames): the first occurrence is logged at once, then at most
 * one line per interval, carrying how many happened since the last line. The exact
 * counts live in the stats view; the log only needs to say that it is happening.
 */

export class Throttle {
  private last = -Infinity;
  private unlogged = 0;

  constructor(private readonly intervalMs: number, private readonly now: () => number = Date.now) {}

  /** Count one event; returns how many to report in a log line now, or 0 to stay quiet. */
  hit(): number {
    this.unlogged++;
    const t = this.now();
    if (t - this.last < this.intervalMs) return 0;
    this.last = t;
    const n = this.unlogged;
    this.unlogged = 0;
    return n;
  }
}
