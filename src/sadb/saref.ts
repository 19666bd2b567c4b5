/**
 * The SAref table (KLIPS's refTable in ipsec_sa.c): a bounded array from SA reference
 * number to SA. KLIPS gives every SA it ADDs such a number, so that a packet's nfmark
 * (15 bits) or a MAST socket can name its SA; SADB_X_EXT_SAREF carries it to the key
 * manager. Refs run from IPSEC_SAREF_FIRST (1) to IPSEC_SA_REF_TABLE_NUM_ENTRIES - 1;
 * 0 is IPSEC_SAREF_NULL, "no ref".
 *
 * Allocation is O(1): a FIFO ring of free refs, filled 1, 2, 3, … at the start, so refs
 * are handed out in ascending order and a freed ref comes back only after every other
 * free one (KLIPS's free list walks forward and wraps likewise). A client may also name a
 * ref itself (pluto does, to move a ref to the SA that replaces an outbound SA): the new
 * SA takes the slot and the SA there before keeps its number but is no longer found by it
 * (ipsec_sa_intern). A ref named that way may still sit in the free ring; it is skipped
 * when it comes up, and goes back in when its slot empties.
 *
 * A slot holds the SA, or while the SA is still stored as its request (sadb.ts's
 * SaTable) the SA's key, a number, which `resolve` turns into the SA when asked for.
 */

import { IPSEC_SAREF_NULL, IPSEC_SA_REF_TABLE_NUM_ENTRIES } from '../wire/index.js';

export const IPSEC_SAREF_FIRST = 1;

/** True when `ref` names a slot of the table (a number outside it is kept on the SA only). */
export function isTableRef(ref: number): boolean {
  return ref >= IPSEC_SAREF_FIRST && ref < IPSEC_SA_REF_TABLE_NUM_ENTRIES;
}

export class SarefTable<T extends { ref: number }> {
  private readonly slots: Array<T | number | undefined> = new Array(IPSEC_SA_REF_TABLE_NUM_ENTRIES).fill(undefined);
  /** Free refs, oldest first: a ring of capacity IPSEC_SA_REF_TABLE_NUM_ENTRIES. */
  private readonly ring = new Uint16Array(IPSEC_SA_REF_TABLE_NUM_ENTRIES);
  private head = 0;
  private count = 0;
  /** Whether a ref is in the ring (so it is never queued twice). */
  private readonly queued = new Uint8Array(IPSEC_SA_REF_TABLE_NUM_ENTRIES);
  private used = 0;

  constructor(private readonly resolve: (key: number) => T | undefined = () => undefined) {
    for (let ref = IPSEC_SAREF_FIRST; ref < IPSEC_SA_REF_TABLE_NUM_ENTRIES; ref++) this.enqueue(ref);
  }

  /** Refs in use. */
  get size(): number {
    return this.used;
  }

  /** A free ref (not yet taken: intern() takes it), or IPSEC_SAREF_NULL when all are in use. */
  alloc(): number {
    while (this.count > 0) {
      const ref = this.ring[this.head];
      this.head = (this.head + 1) % this.ring.length;
      this.count--;
      this.queued[ref] = 0;
      // A ref a client named while it was queued is skipped; it comes back when freed.
      if (this.slots[ref] === undefined) return ref;
    }
    return IPSEC_SAREF_NULL;
  }

  /** Put `sa` in the slot of its ref (a ref outside the table is not interned). */
  intern(sa: T): void {
    if (!isTableRef(sa.ref)) return;
    if (this.slots[sa.ref] === undefined) this.used++;
    this.slots[sa.ref] = sa;
  }

  /** intern() for a stored SA, named by its key. */
  internKey(ref: number, key: number): void {
    if (!isTableRef(ref)) return;
    if (this.slots[ref] === undefined) this.used++;
    this.slots[ref] = key;
  }

  /** The stored SA `key` became `sa`: its slot (if it still holds the key) holds the SA. */
  settle(key: number, sa: T): void {
    if (isTableRef(sa.ref) && this.slots[sa.ref] === key) this.slots[sa.ref] = sa;
  }

  /** untern() for a stored SA. */
  unternKey(ref: number, key: number): void {
    if (!isTableRef(ref) || this.slots[ref] !== key) return;
    this.slots[ref] = undefined;
    this.used--;
    this.enqueue(ref);
  }

  /** Free `sa`'s slot, if the slot still holds it (ipsec_sa_untern). */
  untern(sa: T): void {
    if (!isTableRef(sa.ref) || this.slots[sa.ref] !== sa) return;
    this.slots[sa.ref] = undefined;
    this.used--;
    this.enqueue(sa.ref);
  }

  /** Let `now` hold the slot `old` holds (UPDATE replaces the SA object). */
  move(old: T, now: T): void {
    if (isTableRef(old.ref) && this.slots[old.ref] === old) this.slots[old.ref] = now;
  }

  get(ref: number): T | undefined {
    if (!isTableRef(ref)) return undefined;
    const s = this.slots[ref];
    return typeof s === 'number' ? this.resolve(s) : s;
  }

  /** The interned SAs by ascending ref. */
  *entries(): IterableIterator<[number, T]> {
    for (let ref = IPSEC_SAREF_FIRST; ref < this.slots.length; ref++) {
      const s = this.slots[ref];
      const sa = typeof s === 'number' ? this.resolve(s) : s;
      if (sa) yield [ref, sa];
    }
  }

  private enqueue(ref: number): void {
    if (this.queued[ref]) return;
    this.queued[ref] = 1;
    this.ring[(this.head + this.count) % this.ring.length] = ref;
    this.count++;
  }
}
