/**
 * The `userspace` command run in this process through `main(argv, io)`: the same code path as the
 * binary without a process start (milliseconds instead of seconds), its output captured line by line.
 */
import { main } from '../../src/cli/main.js'
import type { CliResult } from './hub-process.js'

/** Runs `userspace <args>` in process, with `env` over this process's environment and `stdin` as standard input. */
export async function runMain (args: string[], env: Record<string, string> = {}, stdin?: string): Promise<CliResult> {
  const out: string[] = []
  const err: string[] = []
  const code = await main(args, {
    out: (line) => { out.push(line + '\n') },
    err: (line) => { err.push(line + '\n') },
    env: { ...process.env, ...env },
    readStdin: async () => stdin ?? '',
    errIsTTY: false,
    // Commands that run until stopped (serve) are not run this way.
    stopSignal: async () => await new Promise<string>(() => {})
  })
  return { code, stdout: out.join(''), stderr: err.join('') }
}
