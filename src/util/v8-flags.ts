/**
 * V8 flags set at run time (v8.setFlagsFromString), kept so that they can be set again: when a
 * worker thread starts, Node re-applies V8's flags for the new isolate and the process-wide values
 * set at run time are lost (measured: `--semi-space-growth-factor=1` set before a Worker starts
 * stops holding once it is online, and the young generation grows to 2 x 16 MiB). Whoever starts a
 * worker calls reapplyV8Flags() on its 'online' event.
 */
import v8 from 'node:v8';

let flags: readonly string[] = [];

/** Sets `list` now and after every worker start. */
export function setV8Flags(list: readonly string[]): void {
  flags = [...list];
  reapplyV8Flags();
}

export function reapplyV8Flags(): void {
  for (const f of flags) v8.setFlagsFromString(f);
}
