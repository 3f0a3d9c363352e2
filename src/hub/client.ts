/**
 * Who a request comes from, for rate limits and per-client caps: the TCP peer address (never a
 * forwarded-for header, which anyone can forge, unless the operator passes `clientAddress`), with
 * IPv6 addresses grouped by their /64 (one host usually holds a whole /64) and IPv4-mapped IPv6
 * addresses written as IPv4.
 */
import { isIPv6 } from 'node:net'
import { ipv6Prefix64 } from '../store/peer-rate.js'
import type { Env, HubAppOptions } from './options.js'
import type { Context } from 'hono'

/** The client key of a request. */
export function clientKey (c: Context<Env>, options: Pick<HubAppOptions, 'clientAddress'>): string {
  if (options.clientAddress !== undefined) return options.clientAddress(c as unknown as Context)
  return groupAddress(c.env?.incoming?.socket?.remoteAddress ?? 'unknown')
}

/** An address as a client key: IPv4 as it is, IPv6 as its /64 prefix. */
export function groupAddress (address: string): string {
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7)
  return isIPv6(address) ? ipv6Prefix64(address) : address
}
