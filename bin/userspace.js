#!/usr/bin/env node
// The `userspace` command. The TypeScript sources are compiled to dist/ by `npm run build`.
import '../dist/src/polyfill.js'
import { main } from '../dist/src/cli/main.js'

main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err) => {
  console.error(err)
  process.exitCode = 1
})
