/** Random bytes from the platform CSPRNG (WebCrypto), through noble's checked wrapper. */
export { randomBytes } from '@noble/ciphers/utils.js'
export { bytesToHex } from '@noble/hashes/utils.js'
