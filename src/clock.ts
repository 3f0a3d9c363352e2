/**
 * The wall clock, in milliseconds since 1970. Every part that needs the date takes a clock (`now` on
 * a space, `nowMs` elsewhere) defaulting to this one, so that simulations and tests can move time;
 * nothing else in the library reads the system time. Durations (timeouts, waits, throttles) are
 * measured with `performance.now()`, which no clock change can disturb. Browser-safe.
 */
export type Clock = () => number

/** The system's wall clock. */
export const systemClock: Clock = () => Date.now()
