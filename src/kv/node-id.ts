import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A KV server's identity. Placement hashes node ids, so the id must outlive
 * restarts and address changes: it is generated once and kept beside the data
 * it names, in `<dataDir>/node-id`. A data dir belongs to exactly one node.
 */

export const NODE_ID_FILE = 'node-id';
const NODE_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

export class NodeIdError extends Error {
  override readonly name = 'NodeIdError';
}

export function isNodeId(id: unknown): id is string {
  return typeof id === 'string' && NODE_ID_RE.test(id);
}

/**
 * The node id for dataDir. An explicit id wins and is stored; it must match
 * any id already stored there. Without one, the stored id is used, or a new
 * `kv-` + 12 hex id is generated and stored. Synchronous: runs once at start-up.
 */
export function loadOrCreateNodeId(dataDir: string, explicit?: string): string {
  if (explicit !== undefined && !isNodeId(explicit)) {
    throw new NodeIdError(`node id must match [A-Za-z0-9_-]{1,64}, got ${JSON.stringify(explicit)}`);
  }
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, NODE_ID_FILE);
  const stored = readStoredId(file);
  if (stored !== null) {
    if (explicit !== undefined && explicit !== stored) {
      throw new NodeIdError(
        `${dataDir} belongs to node ${JSON.stringify(stored)}, not ${JSON.stringify(explicit)}; ` +
          'use that id or another data dir',
      );
    }
    return stored;
  }
  const id = explicit ?? `kv-${randomBytes(6).toString('hex')}`;
  writeFileAtomic(file, `${id}\n`);
  return id;
}

function readStoredId(file: string): string | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new NodeIdError(`cannot read ${file}`, { cause: err });
  }
  const id = text.trim();
  if (!isNodeId(id)) {
    // Never replace a corrupt id silently: a new id would move this node's
    // ranges on the ring while its data stays put.
    throw new NodeIdError(`${file} holds ${JSON.stringify(text.slice(0, 80))}, not a node id; fix or remove it`);
  }
  return id;
}

/**
 * tmp + fsync + rename + fsync(dir): after a crash the file holds either
 * nothing or the whole id, never a torn write.
 */
function writeFileAtomic(file: string, content: string): void {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o644);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  const dirFd = openSync(join(file, '..'), 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}
