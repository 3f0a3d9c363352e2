/**
 * The optional logger component, shaped like libp2p's (`@libp2p/interface` `ComponentLogger`):
 * `logger.forComponent('userspace:space')` gives a namespaced `log`, with `log.error` and
 * `log.trace`. Anything of that shape fits: helia's `helia.logger`, `defaultLogger()` from
 * `@libp2p/logger` (enable with `DEBUG=userspace:*`), or `lineLogger(write)` for plain lines. The
 * default logs nothing. Browser-safe, no dependencies.
 */

/** A namespaced log: `log(format, ...args)`, with `%s`, `%d`, `%o`, `%j` placeholders as `debug` has them. */
export interface Logger {
  (formatter: any, ...args: any[]): void
  error(formatter: any, ...args: any[]): void
  trace(formatter: any, ...args: any[]): void
  /** False when nothing would be written (callers may skip building costly messages). */
  enabled: boolean
}

export interface ComponentLogger {
  forComponent(name: string): Logger
}

/** Components that take a logger. */
export interface LoggerComponents {
  /** @default a logger that writes nothing */
  logger?: ComponentLogger
}

const silent: Logger = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false })

/** A logger that writes nothing: the default wherever a logger is optional. */
export function noopLogger (): ComponentLogger {
  return { forComponent: () => silent }
}

export interface LineLoggerOptions {
  /** Where `log.error` lines go. @default the same `write` */
  error?: (line: string) => void
  /** Also write `log.trace` lines (chatty: every retry and merge). @default false */
  trace?: boolean
}

/**
 * A logger that writes each message as one plain line (no namespace, no timestamp), for a process's
 * console: `lineLogger(line => { console.log(line) })`. `userspace serve` prints through one.
 */
export function lineLogger (write: (line: string) => void, options: LineLoggerOptions = {}): ComponentLogger {
  const writeError = options.error ?? write
  const trace = options.trace === true
  return {
    forComponent: () => Object.assign((formatter: unknown, ...args: unknown[]) => { write(format(formatter, args)) }, {
      error: (formatter: unknown, ...args: unknown[]) => { writeError(format(formatter, args)) },
      trace: trace ? (formatter: unknown, ...args: unknown[]) => { write(format(formatter, args)) } : () => {},
      enabled: true
    })
  }
}

/** `debug`'s placeholders: %s %d %i %f %o %O %j, %% for a percent sign; extra arguments follow, space-separated. */
function format (formatter: unknown, args: unknown[]): string {
  let rest = args
  let text = typeof formatter === 'string'
    ? formatter.replace(/%([sdifoOj%])/g, (match, kind: string) => {
      if (kind === '%') return '%'
      if (rest.length === 0) return match
      const [value] = rest
      rest = rest.slice(1)
      return kind === 's' || kind === 'd' || kind === 'i' || kind === 'f' ? String(value) : show(value)
    })
    : show(formatter)
  for (const value of rest) text += ' ' + (typeof value === 'string' ? value : show(value))
  return text
}

function show (value: unknown): string {
  if (value instanceof Error) return value.stack ?? `${value.name}: ${value.message}`
  if (typeof value === 'string') return value
  try {
    return JSON.stringify(value, (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v) ?? String(value)
  } catch {
    return String(value)
  }
}
