/**
 * The agent's refusals and job errors. Every refusal is a value with a stable code that the agent
 * answers as JSON (`{"error":{code,message,data}}`) and logs; `data` names what was refused (the
 * word, the option, the role that would be needed) but never a key or a whole command's secrets.
 */
import { ExitCode, SnapferryError, type ErrorData } from '../util/errors.js';

/**
 * Codes (stable; documented in `snapferry agent --help`):
 * - E_AGENT_INTERACTIVE  no SSH_ORIGINAL_COMMAND: an interactive login, which the agent never gives
 * - E_AGENT_SYNTAX       the command line breaks the quoting grammar or holds a shell metacharacter
 * - E_AGENT_BOUND        the command line is longer, or has more or longer words, than accepted
 * - E_AGENT_COMMAND      the first word is not one of the subcommands the agent offers
 * - E_AGENT_OPTION       an option the agent does not pass through (or a value it does not accept)
 * - E_AGENT_ROLE         the key's role may not run this subcommand (or the key has no role)
 * - E_AGENT_SOURCE       a DISK outside the attached disks and the datastores (src/agent/sources.ts)
 */
export class AgentRefusal extends SnapferryError {
  constructor(code: string, message: string, data: ErrorData = {}) {
    super(code, message, data, ExitCode.usage);
  }
}

/** A job id that is not one, a job that does not exist, a job that cannot be cancelled. */
export class JobError extends SnapferryError {
  constructor(code: string, message: string, data: ErrorData = {}, exitCode: (typeof ExitCode)[keyof typeof ExitCode] = ExitCode.failure) {
    super(code, message, data, exitCode);
  }
}
