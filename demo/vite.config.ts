/**
 * Builds the demo page into dist/demo, where `userspace serve` finds it. Relative asset paths, so
 * the page works wherever a hub mounts it. `npm run build:demo`; `npx vite -c demo/vite.config.ts`
 * serves it live (point it at a running hub with `?hub=http://127.0.0.1:8787`).
 */
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

const here = fileURLToPath(new URL('.', import.meta.url))

export default defineConfig({
  root: here,
  base: './',
  publicDir: false,
  build: {
    outDir: fileURLToPath(new URL('../dist/demo', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    // The library is small; one chunk for the page is fine.
    chunkSizeWarningLimit: 600,
    rolldownOptions: {
      onLog (level, log, handler) {
        // The library imports hubStore both ways on purpose (the dynamic import keeps it out of
        // bundles that never name a hub); here it is in the page anyway.
        if (log.code === 'INEFFECTIVE_DYNAMIC_IMPORT') return
        handler(level, log)
      }
    }
  }
})
