#!/usr/bin/env node
import { tuneRuntime } from '../dist/src/cli/runtime.js';

tuneRuntime();
const { main } = await import('../dist/src/cli/main.js');
process.exitCode = await main(process.argv.slice(2));
