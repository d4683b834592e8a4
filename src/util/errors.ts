/**
 * Errors are values with stable codes (isomorphic-git style): the CLI prints them as text or JSON,
 * the agent returns them. Every subclass names what is wrong in `data` (structure, field, value,
 * limit, file ...), so a user can tell which byte of which file we refused.
 */

/** Process exit codes; documented in `snapferry --help`. */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  corrupt: 4,
  unsupported: 5,
  chain: 6,
  interrupted: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export type ErrorData = Record<string, string | number | boolean | null | undefined | string[]>;

export class SnapferryError extends Error {
  readonly code: string;
  readonly data: ErrorData;
  readonly exitCode: ExitCodeValue;

  constructor(code: string, message: string, data: ErrorData = {}, exitCode: ExitCodeValue = ExitCode.failure, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.data = data;
    this.exitCode = exitCode;
  }

  toJSON(): { code: string; message: string; data: ErrorData } {
    return { code: this.code, message: this.message, data: this.data };
  }
}

/** A structure read from an image is inconsistent: the code names the format (E_VMDK_HEADER, E_GPT_CRC ...). */
export class CorruptStructureError extends SnapferryError {
  constructor(code: string, message: string, data: ErrorData = {}) {
    super(code, message, data, ExitCode.corrupt);
  }
}

/** A size or count read from disk is past the bound we accept before allocating or looping on it. */
export class BoundExceededError extends SnapferryError {
  constructor(structure: string, field: string, value: number | bigint, limit: number | bigint, extra: ErrorData = {}) {
    super(
      'E_BOUND',
      `${structure}.${field} = ${value} exceeds the limit of ${limit}`,
      { structure, field, value: String(value), limit: String(limit), ...extra },
      ExitCode.corrupt,
    );
  }
}

/** A read past the end of a source or a structure that does not fit in its container. */
export class TruncatedError extends SnapferryError {
  constructor(what: string, offset: number, length: number, size: number, extra: ErrorData = {}) {
    super(
      'E_TRUNCATED',
      `${what}: ${length} bytes at offset ${offset} lie beyond its end (${size} bytes)`,
      { what, offset, length, size, ...extra },
      ExitCode.corrupt,
    );
  }
}

export class SourceNotFoundError extends SnapferryError {
  constructor(path: string, why: string, extra: ErrorData = {}) {
    super('E_SOURCE_NOT_FOUND', `${path}: ${why}`, { path, ...extra }, ExitCode.notFound);
  }
}

export class UnsupportedError extends SnapferryError {
  constructor(code: string, message: string, data: ErrorData = {}) {
    super(code, message, data, ExitCode.unsupported);
  }
}

export class UsageError extends SnapferryError {
  constructor(message: string, data: ErrorData = {}) {
    super('E_USAGE', message, data, ExitCode.usage);
  }
}

/** Anything not a SnapferryError (a Node system error, a bug) becomes one, keeping errno codes. */
export function toSnapferryError(err: unknown): SnapferryError {
  if (err instanceof SnapferryError) return err;
  if (err instanceof Error) {
    const sys = err as NodeJS.ErrnoException;
    if (sys.code === 'ENOENT') return new SourceNotFoundError(sys.path ?? '?', 'no such file or directory', { errno: sys.code });
    return new SnapferryError(sys.code ? `E_SYS_${sys.code}` : 'E_INTERNAL', err.message, { errno: sys.code }, ExitCode.failure, { cause: err });
  }
  return new SnapferryError('E_INTERNAL', String(err));
}
