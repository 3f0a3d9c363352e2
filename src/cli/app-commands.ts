/**
 * The `userspace` commands for scoped app access, run with the owner's key like the other space
 * commands: `apps` lists the apps holding grants (from the space's private directory), `revoke <app>`
 * moves every namespace the app held keys for to a new epoch, so it cannot read or write anything
 * written afterwards.
 */
import { parse, withSpace, HUB_OPTION } from './space-commands.js'
import type { Command } from './main.js'

const OPTIONS = [
  '--key-file <path>      file holding the wallet private key (hex); or set USERSPACE_PRIVATE_KEY',
  '--json                 machine-readable output',
  HUB_OPTION
]
const FLAGS = { 'key-file': { type: 'string' as const }, json: { type: 'boolean' as const }, hub: { type: 'string' as const } }

export const APP_COMMANDS: Record<string, Command> = {
  apps: {
    summary: 'list the apps holding grants to your space, with their origin and scope',
    usage: 'userspace apps [--json] [--hub <url>] [--key-file <path>]',
    options: OPTIONS,
    examples: ['USERSPACE_PRIVATE_KEY=0x… userspace apps', 'USERSPACE_PRIVATE_KEY=0x… userspace apps --json | jq .'],
    async run (args, io) {
      const { flags } = parse(args, FLAGS, { min: 0, max: 0, names: 'no arguments' })
      return withSpace(flags, io, async (_section, space) => {
        const apps = await space.apps()
        if (flags.json === true) {
          io.out(JSON.stringify(apps))
          return 0
        }
        if (apps.length === 0) io.out('no app holds a grant')
        for (const a of apps) {
          const scope = [a.read.length > 0 ? `reads ${a.read.join(',')}` : '', a.write.length > 0 ? `writes ${a.write.join(',')}` : ''].filter(s => s !== '').join('; ')
          io.out(`${a.app}\t${a.origin ?? '(native)'}\t${scope === '' ? 'own namespace only' : scope}\tissued ${new Date(a.issuedAt).toISOString()}${a.current ? '' : '\t(stale: must connect again)'}`)
        }
        return 0
      })
    }
  },
  revoke: {
    summary: 'revoke an app: its namespaces move to new keys, so it cannot read or write anything written afterwards',
    usage: 'userspace revoke <app> [--json] [--hub <url>] [--key-file <path>]',
    options: OPTIONS,
    examples: ['USERSPACE_PRIVATE_KEY=0x… userspace revoke io.example.app'],
    async run (args, io) {
      const { flags, positionals } = parse(args, FLAGS, { min: 1, max: 1, names: '<app>' })
      const app = positionals[0] as string
      return withSpace(flags, io, async (_section, space) => {
        const moved = await space.revoke(app)
        if (flags.json === true) io.out(JSON.stringify({ revoked: app, moved }))
        else io.out(`revoked ${app}; moved to new keys: ${moved.map(m => `${m.namespace} (epoch ${m.epoch}, ${m.name})`).join(', ')}`)
        return 0
      })
    }
  }
}
