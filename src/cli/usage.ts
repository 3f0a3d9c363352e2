/** Bad command-line usage (unknown flag, missing argument, bad value): exit code 2. */
import { InvalidInputError } from '../errors.js'

export class UsageError extends InvalidInputError {
  override name = 'InvalidInputError'
}
