/**
 * Wallet adapters. A space needs two things from a wallet: its address, and a personal_sign
 * (EIP-191) signature over a text message. We accept an EIP-1193 provider (`window.ethereum`) and
 * any object with an address and a signMessage method: viem accounts and wallet clients
 * (`signMessage({ message })`), ethers signers (`getAddress()`, `signMessage(message)`), or a plain
 * `{ address, signMessage: (message) => hex }`.
 */
import { checksumAddress } from '../crypto/eip191.js'
import { bytesToHex, utf8 } from '../crypto/bytes.js'
import { InvalidInputError, SignerError, describeValue } from '../errors.js'

/** An EIP-1193 provider such as `window.ethereum`. */
export interface Eip1193Provider {
  request(args: { method: string, params?: unknown[] }): Promise<unknown>
}

/** Anything that knows its address and can personal_sign a text message. */
export interface MessageSigner {
  address?: string
  getAddress?: () => Promise<string>
  account?: { address: string }
  signMessage: (...args: any[]) => Promise<string>
}

export type Signer = Eip1193Provider | MessageSigner

export interface WalletAdapter {
  getAddress(): Promise<string>
  signMessage(message: string): Promise<string>
}

export function toWallet (signer: Signer): WalletAdapter {
  if (signer === null || typeof signer !== 'object') {
    throw new InvalidInputError(`"signer" expected an EIP-1193 provider or an object with address and signMessage, got ${describeValue(signer)}`)
  }
  if (typeof (signer as Eip1193Provider).request === 'function' && typeof (signer as MessageSigner).signMessage !== 'function') {
    return fromProvider(signer as Eip1193Provider)
  }
  if (typeof (signer as MessageSigner).signMessage !== 'function') {
    throw new InvalidInputError('"signer" expected an EIP-1193 provider or an object with address and signMessage, got an object with neither request() nor signMessage()')
  }
  return fromMessageSigner(signer as MessageSigner)
}

function fromProvider (provider: Eip1193Provider): WalletAdapter {
  let address: Promise<string> | undefined
  const getAddress = async (): Promise<string> => {
    address ??= (async () => {
      const accounts = await call(provider, 'eth_requestAccounts')
      if (!Array.isArray(accounts) || typeof accounts[0] !== 'string') throw new SignerError('the wallet returned no account')
      return checksumAddress(accounts[0])
    })()
    return address
  }
  return {
    getAddress,
    async signMessage (message) {
      const from = await getAddress()
      const signature = await call(provider, 'personal_sign', ['0x' + bytesToHex(utf8(message)), from])
      if (typeof signature !== 'string') throw new SignerError('the wallet returned no signature')
      return signature
    }
  }
}

function fromMessageSigner (signer: MessageSigner): WalletAdapter {
  // viem objects take `{ message }` (accounts have `type`, wallet clients have `transport`);
  // ethers signers and plain objects take the message itself.
  const s = signer as MessageSigner & { type?: unknown, transport?: unknown }
  const viemStyle = typeof s.type === 'string' || s.transport !== undefined
  return {
    async getAddress () {
      const address = signer.address ?? signer.account?.address ?? await signer.getAddress?.()
      if (typeof address !== 'string') throw new InvalidInputError(`"signer" expected an address (address, account.address or getAddress()), got ${describeValue(address)}`)
      return checksumAddress(address)
    },
    async signMessage (message) {
      try {
        const signature = viemStyle
          ? await signer.signMessage({ message, account: signer.account ?? (signer as { address?: string }).address })
          : await signer.signMessage(message)
        if (typeof signature !== 'string') throw new SignerError('the wallet returned no signature')
        return signature
      } catch (err) {
        if (err instanceof SignerError) throw err
        throw new SignerError(`the wallet did not sign: ${(err as Error).message}`, { cause: err })
      }
    }
  }
}

async function call (provider: Eip1193Provider, method: string, params?: unknown[]): Promise<unknown> {
  try {
    return await provider.request(params === undefined ? { method } : { method, params })
  } catch (err) {
    const code = (err as { code?: unknown }).code
    throw new SignerError(code === 4001 ? 'the user rejected the signature request' : `the wallet did not sign: ${(err as Error).message}`, { cause: err })
  }
}
