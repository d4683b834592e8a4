/**
 * A least-recently-used cache with a byte budget: caches of grain tables, grains, MFT records and
 * index blocks all say how many bytes they may hold, never "load it all". Map keeps insertion
 * order, so re-inserting on hit makes the first key the least recently used.
 */
export class ByteLru<K, V> {
  private readonly entries = new Map<K, { value: V; bytes: number }>();
  private used = 0;

  constructor(
    readonly budgetBytes: number,
    private readonly sizeOf: (value: V) => number,
  ) {}

  get(key: K): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    this.entries.delete(key);
    this.entries.set(key, e);
    return e.value;
  }

  set(key: K, value: V): void {
    const bytes = this.sizeOf(value);
    const old = this.entries.get(key);
    if (old) {
      this.used -= old.bytes;
      this.entries.delete(key);
    }
    if (bytes > this.budgetBytes) return; // never cache what alone exceeds the budget
    this.entries.set(key, { value, bytes });
    this.used += bytes;
    while (this.used > this.budgetBytes) {
      const first = this.entries.keys().next();
      if (first.done) break;
      const e = this.entries.get(first.value)!;
      this.entries.delete(first.value);
      this.used -= e.bytes;
    }
  }

  /** Whether `key` is cached, without making it the most recently used. */
  has(key: K): boolean {
    return this.entries.has(key);
  }

  get bytesUsed(): number {
    return this.used;
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
    this.used = 0;
  }
}

/**
 * `b`'s bytes in an allocation of their own, for keeping in a cache. A small Buffer is usually a view
 * of a bigger store (Node's 8 KiB allocation pool, or a read-ahead window), and a cached view pins all
 * of it: measured on a 1,000,000-file ext4 volume with 1 KiB blocks, 7,172 cached blocks held 56 MiB
 * of 8 KiB pool slabs against a 16 MiB budget. A Buffer that is its whole store is returned as is.
 */
export function detached(b: Buffer): Buffer {
  if (b.byteOffset === 0 && b.buffer.byteLength === b.length) return b;
  const own = Buffer.allocUnsafeSlow(b.length);
  b.copy(own);
  return own;
}
