/**
 * Builds the demo page into dist/demo, where `userspace serve` finds it. Relative asset paths, so
 * the page works wherever a hub mounts it. `npm run build:demo`; `npx vite -c demo/vite.config.ts`
 * serves it live (point it at a running hub with `?hub=http://127.0.0.1:8787`).
 *
 * The build also writes `sw.js`, the page's service worker (demo/sw.ts, types stripped), with the
 * list of files it emitted and a hash of their contents, so every build that changes the page is a
 * new service worker that caches exactly that build. Every page gets the same head tags (charset,
 * viewport, color scheme) from one place, `sharedHead`.
 */
import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { defineConfig, transformWithOxc } from 'vite'
import type { Plugin } from 'vite'

const here = fileURLToPath(new URL('.', import.meta.url))

function serviceWorker (): Plugin {
  return {
    name: 'userspace-demo-service-worker',
    apply: 'build',
    async writeBundle (options, bundle) {
      const files = Object.keys(bundle).filter(name => !name.endsWith('.map')).sort()
      const hash = createHash('sha256')
      for (const name of files) {
        const item = bundle[name]
        hash.update(name).update('\0')
        if (item?.type === 'chunk') hash.update(item.code)
        else if (item !== undefined) hash.update(item.source)
      }
      const source = await readFile(join(here, 'sw.ts'), 'utf8')
      const { code } = await transformWithOxc(source, 'sw.ts', { lang: 'ts' })
      const constants = `const SHELL_FILES = ${JSON.stringify(files)};\nconst SHELL_VERSION = ${JSON.stringify(hash.digest('hex').slice(0, 16))};\n`
      await writeFile(join(options.dir ?? join(here, '../dist/demo'), 'sw.js'), constants + code)
    }
  }
}

/** The head tags every page carries, put first in each page's <head>. */
function sharedHead (): Plugin {
  return {
    name: 'userspace-demo-shared-head',
    transformIndexHtml () {
      return [
        { tag: 'meta', attrs: { charset: 'utf-8' }, injectTo: 'head-prepend' },
        { tag: 'meta', attrs: { name: 'viewport', content: 'width=device-width, initial-scale=1' }, injectTo: 'head-prepend' },
        { tag: 'meta', attrs: { name: 'color-scheme', content: 'light dark' }, injectTo: 'head-prepend' }
      ]
    }
  }
}

export default defineConfig({
  root: here,
  base: './',
  publicDir: false,
  plugins: [sharedHead(), serviceWorker()],
  build: {
    outDir: fileURLToPath(new URL('../dist/demo', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    // The library is small; one chunk for the page is fine.
    chunkSizeWarningLimit: 600,
    rolldownOptions: {
      // The main page, the connect page hubs serve at /connect, and the example dapp.
      input: { main: join(here, 'index.html'), connect: join(here, 'connect.html'), dapp: join(here, 'dapp.html') },
      onLog (level, log, handler) {
        // The library imports hubStore both ways on purpose (the dynamic import keeps it out of
        // bundles that never name a hub); here it is in the page anyway.
        if (log.code === 'INEFFECTIVE_DYNAMIC_IMPORT') return
        handler(level, log)
      }
    }
  }
})
