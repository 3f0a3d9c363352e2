/**
 * The HTTP server's own limits, the ones no route can enforce: how long a client may take to send
 * its headers and its whole request, how many sockets the hub holds open (derived from the
 * process's file-descriptor limit, which the hub raises to its hard limit at start), and how many
 * of them one client address (IPv6: one /64) may hold. Over a cap, the new socket gets a 503 with
 * Retry-After and is closed, before it costs a request.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { groupAddress } from './client.js'
import type { Server, ServerOptions } from 'node:http'
import type { Socket } from 'node:net'

/** Time a client has to send its request headers. @default 10 s */
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000
/** Time a client has to send its whole request, body included (a 16 MiB upload at ~2 Mbit/s). @default 60 s */
export const DEFAULT_HUB_REQUEST_TIMEOUT_MS = 60_000
/** Idle time after a response before a kept-alive socket is closed. @default 5 s */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 5_000
/** Open sockets per client address (IPv6: per /64). @default 128 */
export const DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 128
/** Share of the file-descriptor limit the HTTP server may hold as sockets; the rest is for blocks, LevelDB and libp2p. */
const SOCKET_SHARE_OF_FDS = 0.5

export interface HubConnectionOptions {
  /** @default DEFAULT_HEADERS_TIMEOUT_MS (10 s) */
  headersTimeoutMs?: number
  /** @default DEFAULT_HUB_REQUEST_TIMEOUT_MS (60 s) */
  requestTimeoutMs?: number
  /** @default DEFAULT_KEEP_ALIVE_TIMEOUT_MS (5 s) */
  keepAliveTimeoutMs?: number
  /**
   * Open HTTP sockets, all clients together.
   *
   * @default half the process's file-descriptor soft limit (after raising it to the hard limit)
   */
  maxConnections?: number
  /** @default DEFAULT_MAX_CONNECTIONS_PER_CLIENT (128) */
  maxConnectionsPerClient?: number
}

/** Options for `http.createServer` that bound slow clients. */
export function serverOptions (options: HubConnectionOptions): ServerOptions {
  const headersTimeout = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS
  return {
    headersTimeout,
    requestTimeout: Math.max(headersTimeout, options.requestTimeoutMs ?? DEFAULT_HUB_REQUEST_TIMEOUT_MS),
    keepAliveTimeout: options.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
    // Node checks the two timeouts above on this interval (30 s by default, which would let a
    // silent socket live 40 s).
    connectionsCheckingInterval: Math.min(1_000, headersTimeout)
  }
}

/** The soft and hard limits on open files, from /proc (Linux); undefined elsewhere. */
export function fileLimits (): { soft: number, hard: number } | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find(l => l.startsWith('Max open files'))
    const [soft, hard] = (line ?? '').slice('Max open files'.length).trim().split(/\s+/)
    const parse = (v: string | undefined): number => v === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(v)
    const limits = { soft: parse(soft), hard: parse(hard) }
    return Number.isFinite(limits.soft) && Number.isFinite(limits.hard) ? limits : undefined
  } catch {
    return undefined
  }
}

/**
 * Raises this process's soft limit on open files to its hard limit (Node has no setrlimit; util-linux
 * `prlimit` can set another process's limits, and raising a soft limit to the hard one needs no
 * privilege). Returns the soft limit in force afterwards, or undefined when unknown.
 */
export function raiseFileLimit (): number | undefined {
  const before = fileLimits()
  if (before === undefined || before.soft >= before.hard) return before?.soft
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${before.hard}:${before.hard}`], { stdio: 'ignore', timeout: 2_000 })
  } catch {
    // No prlimit: keep the soft limit and derive the caps from it.
  }
  return fileLimits()?.soft ?? before.soft
}

const REFUSAL_BODY = JSON.stringify({ message: 'too many open connections; retry shortly', name: 'UnavailableError' })
const REFUSAL = `HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(REFUSAL_BODY)}\r\nRetry-After: 1\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n${REFUSAL_BODY}`

/**
 * Counts the server's sockets, in all and per client address, and answers a socket over either
 * cap with a 503 and closes it. Returns the caps in force.
 */
export function guardConnections (server: Server, options: HubConnectionOptions, fdSoftLimit: number | undefined): { maxConnections: number, maxConnectionsPerClient: number } {
  const maxConnections = options.maxConnections ?? Math.max(64, Math.floor((fdSoftLimit ?? 1024) * SOCKET_SHARE_OF_FDS))
  const maxConnectionsPerClient = options.maxConnectionsPerClient ?? DEFAULT_MAX_CONNECTIONS_PER_CLIENT
  const perClient = new Map<string, number>()
  let open = 0
  // First in line, so a refused socket is closed before the HTTP parser reads from it.
  server.prependListener('connection', (socket: Socket) => {
    const client = groupAddress(socket.remoteAddress ?? 'unknown')
    const mine = perClient.get(client) ?? 0
    if (open >= maxConnections || mine >= maxConnectionsPerClient) {
      // Not counted; a short write and close cost less than any request.
      socket.on('error', () => {})
      socket.pause()
      socket.end(REFUSAL, () => { socket.destroy() })
      setTimeout(() => { socket.destroy() }, 1_000).unref()
      return
    }
    open++
    perClient.set(client, mine + 1)
    socket.once('close', () => {
      open--
      const left = (perClient.get(client) ?? 1) - 1
      if (left <= 0) perClient.delete(client)
      else perClient.set(client, left)
    })
  })
  return { maxConnections, maxConnectionsPerClient }
}
