// Packaging checks on what `npm pack` would publish: publint (exports, files, fields) and
// @arethetypeswrong/cli (types resolve for node16 and bundler consumers; the package is ESM-only,
// so the CommonJS and node10 resolutions are out of scope). Exits non-zero on any finding.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const bin = (name) => join(root, 'node_modules', '.bin', name)
const dir = mkdtempSync(join(tmpdir(), 'userspace-pack-'))
try {
  execFileSync(bin('publint'), ['--strict', '--pack', 'false'], { cwd: root, stdio: 'inherit' })
  // The build has already run (`npm test` builds first): pack what is there without running prepare again.
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: root, encoding: 'utf8' }))
  execFileSync(bin('attw'), [join(dir, packed.filename), '--profile', 'esm-only'], { cwd: root, stdio: 'inherit' })
} catch (err) {
  process.exitCode = err.status ?? 1
} finally {
  rmSync(dir, { recursive: true, force: true })
}
