/**
 * The two pieces of helia a UserSpace node runs: the helia core (`createHeliaLight`) and the bitswap
 * block broker (`withBitswap`). Both packages list `@helia/libp2p` as a dependency, which installs
 * libp2p's browser and mobile transports (WebRTC with react-native, an HTTP stack on undici 8 that
 * needs Node 22.19) although neither imports it at run time. So the build
 * (`scripts/bundle-helia.mjs`) inlines this module's two imports into `dist/`, keeping every other
 * package external, and `helia` / `@helia/bitswap` stay build-time dependencies: installing
 * `userspace` installs only what these pieces really import.
 */
export { createHeliaLight } from 'helia'
export { withBitswap } from '@helia/bitswap'
