/**
 * Bad command-line usage (unknown flag, missing argument, bad value): exit code 2. A kind of
 * InvalidInputError, so callers that catch bad input catch it too, with its own name.
 */
import { InvalidInputError } from '../errors.js'

export class UsageError extends InvalidInputError {
  static override readonly code: string = 'UsageError'
  override name = 'UsageError'
}
