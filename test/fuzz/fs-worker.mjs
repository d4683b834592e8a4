// Worker entry of the filesystem fuzzer (test/fuzz/fs-fuzz.ts): worker threads do not inherit
// tsx's loader, so register it here and then load the TypeScript module that runs the cases.
import { register } from 'tsx/esm/api';

register();
await import('./fs-fuzz.ts');
