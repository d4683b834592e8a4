/** Path resolution over any FileSystem: '/a/b/c' to an inode, component by component, no symlink following. */
import type { FileSystem } from './types.js';
import { SnapferryError, ExitCode } from '../util/errors.js';

export class PathNotFoundError extends SnapferryError {
  constructor(path: string, missing: string) {
    super('E_FS_NOT_FOUND', `${path}: no such file or directory (at '${missing}')`, { path, missing }, ExitCode.notFound);
  }
}

export class NotADirectoryError extends SnapferryError {
  constructor(path: string, component: string) {
    super('E_FS_NOT_DIR', `${path}: '${component}' is not a directory`, { path, component }, ExitCode.failure);
  }
}

/** Most components a path may have: bounds the walk on a hostile tree. */
export const MAX_PATH_COMPONENTS = 4096;

export async function resolvePath(fs: FileSystem, path: string): Promise<number> {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length > MAX_PATH_COMPONENTS) throw new SnapferryError('E_FS_PATH', `${path}: more than ${MAX_PATH_COMPONENTS} components`, { path }, ExitCode.usage);
  let ino = fs.rootIno;
  const stack: number[] = [];
  for (const [i, name] of parts.entries()) {
    if (name === '..') {
      ino = stack.pop() ?? fs.rootIno;
      continue;
    }
    const st = await fs.stat(ino);
    if (st.type !== 'dir') throw new NotADirectoryError(path, parts.slice(0, i).join('/'));
    const child = await fs.lookup(ino, name);
    if (child === null) throw new PathNotFoundError(path, parts.slice(0, i + 1).join('/'));
    stack.push(ino);
    ino = child;
  }
  return ino;
}
