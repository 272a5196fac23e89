/**
 * What the library logs through: four levels, each taking a record of fields and a message,
 * in that order. A pino logger is one as it is; so is anything with these four methods. The
 * library logs rarely (connection changes, refused set-ups, a hook that threw) and at debug
 * once per request settled.
 */
export interface Logger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

const ignore = (): void => {};

/** Logs nothing. */
export const silentLogger: Logger = Object.freeze({ debug: ignore, info: ignore, warn: ignore, error: ignore });

/**
 * The logger used when none is given: warnings and errors to stderr (console.warn and
 * console.error), one line each with the fields as JSON; debug and info dropped. What goes
 * wrong is seen without any set-up, and a quiet service stays quiet.
 */
export const stderrLogger: Logger = Object.freeze({
  debug: ignore,
  info: ignore,
  warn: (fields: Record<string, unknown>, message: string) => console.warn(line('warn', fields, message)),
  error: (fields: Record<string, unknown>, message: string) => console.error(line('error', fields, message)),
});

function line(level: string, fields: Record<string, unknown>, message: string): string {
  let json: string;
  try {
    json = JSON.stringify(fields);
  } catch {
    json = '{}';
  }
  return `@fib-rpc/rpc ${level}: ${message} ${json}`;
}
