/**
 * The one logger shape FlexStore code writes to: pino's (a server's
 * `app.log`), narrowed to what the code calls. A component takes only the
 * levels it uses (`Pick<Logger, 'warn'>`), so a test can pass a small fake.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** Drops everything: the default where logging is optional. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
