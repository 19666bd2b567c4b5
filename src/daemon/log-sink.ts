/**
 * Where klipsd's log lines go: a file descriptor (stderr), written synchronously, one
 * pino line per write. A line that cannot be written (ENOSPC on a full disk, EIO, EPIPE
 * when nobody reads, EAGAIN on a full non-blocking pipe, …) is dropped and counted, never
 * thrown: a log that cannot be written must not stop the PF_KEY service. When writing
 * works again, the first line written says how many were lost. The counters appear in
 * the stats view (`server.logDropped`, `server.logLastError`).
 */

import fs from 'node:fs';

export class LogSink {
  /** Lines written whole. */
  written = 0;
  /** Lines dropped (not written, or cut short) because the descriptor refused them. */
  dropped = 0;
  /** The code of the last write error (e.g. "ENOSPC"), or "" if none happened. */
  lastError = '';
  /** Drops not yet reported in the log itself. */
  private unreported = 0;
  /** A line was cut short: the next write starts on a fresh line. */
  private midLine = false;

  constructor(private readonly fd: number, private readonly name = 'klipsd') {}

  /** pino's destination interface: one serialized line (newline included). */
  write(line: string): boolean {
    if (this.unreported > 0) {
      const notice = `${JSON.stringify({ level: 40, time: Date.now(), pid: process.pid, name: this.name, lost: this.unreported, lastError: this.lastError, msg: 'log lines could not be written' })}\n`;
      if (!this.put(notice)) {
        this.lose();
        return true;
      }
      this.unreported = 0;
    }
    if (this.put(line)) this.written++;
    else this.lose();
    return true;
  }

  /** Count a line lost elsewhere (e.g. a write to process.stderr that failed). */
  lose(code?: string): void {
    this.dropped++;
    this.unreported++;
    if (code) this.lastError = code;
  }

  /** Write all of `text`; false (with lastError set) if the descriptor refused any of it. */
  private put(text: string): boolean {
    let buf = Buffer.from(this.midLine ? `\n${text}` : text);
    const whole = buf.length;
    try {
      for (;;) {
        const n = fs.writeSync(this.fd, buf);
        if (n >= buf.length) {
          this.midLine = false;
          return true;
        }
        buf = buf.subarray(n);
      }
    } catch (e) {
      this.lastError = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      if (buf.length < whole) this.midLine = true;
      return false;
    }
  }
}
