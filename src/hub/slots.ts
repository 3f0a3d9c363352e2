/**
 * Counted slots for long-lived or costly requests (event streams, CAR builds): a hub-wide cap (a
 * 503 with Retry-After beyond it: the hub is busy) and a cap per client (a 429 beyond it: that
 * client holds its share), so one client cannot take every slot.
 */
import { RateLimitError, UnavailableError } from '../errors.js'

export class Slots {
  private readonly perClient = new Map<string, number>()
  private open = 0

  constructor (private readonly what: string, private readonly max: number, private readonly maxPerClient: number) {}

  /** Takes a slot for `client`; the returned function gives it back (once, however often called). */
  acquire (client: string): () => void {
    const mine = this.perClient.get(client) ?? 0
    if (mine >= this.maxPerClient) throw new RateLimitError(`too many open ${this.what} from ${client} (at most ${this.maxPerClient}); close one first`)
    if (this.open >= this.max) throw new UnavailableError(`too many open ${this.what} on this hub; try again shortly`)
    this.open++
    this.perClient.set(client, mine + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      this.open--
      const left = (this.perClient.get(client) ?? 1) - 1
      if (left <= 0) this.perClient.delete(client)
      else this.perClient.set(client, left)
    }
  }

  get size (): number { return this.open }
}
