/**
 * Typed errors of the store layer (codes are stable; the CLI prints them, the agent returns them).
 * `retryable` marks the ones a retry layer may retry: a dropped or refused connection, never a
 * refused name, an existing object, a host key or an authentication failure.
 */
import { ExitCode, SnapferryError, type ErrorData, type ExitCodeValue } from '../util/errors.js';

export type StoreErrorCode =
  | 'E_STORE_NAME' // a name we refuse (`..`, leading '/', NUL, empty component, partial suffix)
  | 'E_STORE_EXISTS' // put of a name that exists, or that appeared before the commit
  | 'E_STORE_NOT_FOUND' // a missing location (without `create`) or a missing object
  | 'E_STORE_RANGE' // a negative or non-integer offset/length
  | 'E_STORE_STATE' // write after end/abort, a second end
  | 'E_STORE_CONNECTION' // the connection dropped or could not be made (retryable)
  | 'E_STORE_RESUME' // a put could not resume after a reconnect (the partial was deleted)
  | 'E_STORE_IO' // the server refused an operation (SFTP status), or a local I/O error
  | 'E_STORE_URL' // a URL we cannot parse
  | 'E_SSH_HOSTKEY_UNKNOWN' // host not in known_hosts and acceptNewHostKey not set
  | 'E_SSH_HOSTKEY_CHANGED' // host in known_hosts with a different key: always refused
  | 'E_SSH_AUTH' // every key was refused
  | 'E_SSH_KEY'; // a private key we cannot read or parse

const exitCodes: Partial<Record<StoreErrorCode, ExitCodeValue>> = {
  E_STORE_NAME: ExitCode.usage,
  E_STORE_URL: ExitCode.usage,
  E_STORE_RANGE: ExitCode.usage,
  E_STORE_NOT_FOUND: ExitCode.notFound,
};

export class StoreError extends SnapferryError {
  override readonly code: StoreErrorCode;
  readonly retryable: boolean;

  constructor(code: StoreErrorCode, message: string, data: ErrorData = {}, options?: { cause?: unknown; retryable?: boolean }) {
    super(code, message, data, exitCodes[code] ?? ExitCode.failure, options);
    this.code = code;
    this.retryable = options?.retryable ?? code === 'E_STORE_CONNECTION';
  }
}

export function isRetryable(err: unknown): boolean {
  return err instanceof StoreError && err.retryable;
}
