/** One parsed line of a program's pino JSON log (stderr). */
export type LogLine = Record<string, unknown>;

/**
 * Feeds a child's stderr chunk by chunk and keeps each complete line that parses as JSON;
 * anything else on stderr (a stack trace, a warning from node) is not a log line.
 */
export class JsonLines {
  readonly lines: LogLine[] = [];
  #partial = '';

  push(chunk: Buffer | string): void {
    this.#partial += chunk;
    const complete = this.#partial.split('\n');
    this.#partial = complete.pop() ?? '';
    for (const line of complete) {
      try {
        this.lines.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    }
  }
}

/** The time (ms since the epoch) of the first log line at or after `after` whose msg matches. */
export function logTime(logs: LogLine[], msg: string | RegExp, after = 0): number | undefined {
  for (const line of logs) {
    const at = typeof line.time === 'number' ? line.time : Date.parse(String(line.time));
    if (at >= after && (typeof msg === 'string' ? line.msg === msg : msg.test(String(line.msg)))) return at;
  }
  return undefined;
}
