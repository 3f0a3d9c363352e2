/**
 * The `userspace` commands for scoped app access, run with the owner's key like the other space
 * commands: `apps` lists the apps holding grants (from the space's private directory), `revoke <app>`
 * moves every namespace the app held keys for to a new epoch, so it cannot read or write anything
 * written afterwards.
 */
import { ownSpaceCommands, withSpace, OWNER_FLAGS } from './space-commands.js'
import type { Command } from './main.js'

export const APP_COMMANDS: Record<string, Command> = ownSpaceCommands(OWNER_FLAGS, {
  apps: {
    summary: 'list the apps holding grants to your space, with their origin and scope',
    args: '',
    examples: ['USERSPACE_PRIVATE_KEY=0x… userspace apps', 'USERSPACE_PRIVATE_KEY=0x… userspace apps --json | jq .'],
    async run (_, flags, io) {
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
    args: '<app>',
    examples: ['USERSPACE_PRIVATE_KEY=0x… userspace revoke io.example.app'],
    async run ([app], flags, io) {
      return withSpace(flags, io, async (_section, space) => {
        const moved = await space.revoke(app)
        if (flags.json === true) io.out(JSON.stringify({ revoked: app, moved }))
        else io.out(`revoked ${app}; moved to new keys: ${moved.map(m => `${m.namespace} (epoch ${m.epoch}, ${m.name})`).join(', ')}`)
        return 0
      })
    }
  }
})
