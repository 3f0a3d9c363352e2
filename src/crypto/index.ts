/** The crypto layer: wallet signatures, key derivation and the private-block envelope (@noble only). */
export * from './bytes.js'
export * from './eip191.js'
export * from './keys.js'
export * from './envelope.js'
