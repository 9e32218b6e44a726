/**
 * twemproxy's `hash_tag` rule (server_pool_idx in nc_server.c): with a two-byte tag such as
 * "{}", hash only the bytes between the first opening byte and the next closing byte after it,
 * when there is at least one byte between them; otherwise hash the whole key.
 *
 *   "{user1}:name" -> "user1"     "a{}b" -> "a{}b"     "x{y" -> "x{y"     "{a}{b}" -> "a"
 */

/** Throws unless `tag` is unset, empty, or exactly two ASCII characters (as twemproxy's config). */
function tagBytes(tag: string): void {
  if (tag.length !== 2 || tag.charCodeAt(0) > 0x7f || tag.charCodeAt(1) > 0x7f) {
    throw new RangeError(`hash tag must be two ASCII characters, got ${JSON.stringify(tag)}`);
  }
}

/**
 * Calls `fn(key, start, end)` with the range of `key` to hash and returns its result. Nothing is
 * allocated, so the per-request path can use it; `hashTagRange` is the convenient form.
 */
export function withHashTag<T>(
  key: Uint8Array,
  tag: string | undefined,
  fn: (key: Uint8Array, start: number, end: number) => T,
): T {
  if (tag !== undefined && tag.length !== 0) {
    tagBytes(tag);
    const open = key.indexOf(tag.charCodeAt(0));
    if (open >= 0) {
      const close = key.indexOf(tag.charCodeAt(1), open + 1);
      if (close > open + 1) return fn(key, open + 1, close);
    }
  }
  return fn(key, 0, key.length);
}

const asRange = (_key: Uint8Array, start: number, end: number): [number, number] => [start, end];

/** `[start, end)` of the part of `key` that is hashed under `tag` (the whole key when no tag applies). */
export function hashTagRange(key: Uint8Array, tag: string | undefined): [number, number] {
  return withHashTag(key, tag, asRange);
}
