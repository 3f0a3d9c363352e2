/**
 * Node 20 lacks `Promise.withResolvers` (ES2024), which libp2p, yamux, noise, kad-dht and mortice
 * call. This module installs a spec-shaped version once; every Node entry point imports it first.
 * Browsers and Node 22+ already have it, so there it does nothing.
 */
if (typeof (Promise as { withResolvers?: unknown }).withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T> (): PromiseWithResolvers<T> {
      let resolve!: (value: T | PromiseLike<T>) => void
      let reject!: (reason?: unknown) => void
      const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}

export {}
