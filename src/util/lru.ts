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
