#!/usr/bin/env node
// The `userspace` command. The TypeScript sources are compiled to dist/ by `npm run build` (run by
// `npm install` in a clone, through `prepare`); an installed package ships dist/.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const entry = new URL('../dist/src/cli/main.js', import.meta.url)
if (!existsSync(entry)) {
  console.error(`userspace: ${fileURLToPath(entry)} is missing: run \`npm run build\` in ${fileURLToPath(new URL('..', import.meta.url))}`)
  process.exit(1)
}
await import('../dist/src/polyfill.js')
const { main } = await import('../dist/src/cli/main.js')
main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err) => {
  console.error(err)
  process.exitCode = 1
})
