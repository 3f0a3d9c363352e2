/** The crypto layer: wallet signatures, key derivation and the private-block envelope (@noble, plus the runtime's native ChaCha20-Poly1305 where it has one). */
export * from './bytes.js'
export * from './eip191.js'
export * from './keys.js'
export * from './envelope.js'
