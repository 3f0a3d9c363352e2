import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['./test/helpers/setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Tests that start hubs or helia nodes bind loopback ports they pick themselves; two workers
    // match the two cores of the target machine.
    maxWorkers: 2
  }
})
