/**
 * FNV-1a as twemproxy's `hash: fnv1a_64` computes it (`hash_fnv1a_64` in nc_fnv.c).
 *
 * Despite the name the result is 32-bit: twemproxy keeps the hash in a `uint32_t`, so only the
 * low 32 bits of the 64-bit offset basis (0xcbf29ce484222325) and prime (0x100000001b3) matter.
 * It reads the key as C `char`, which is signed on x86-64, so a byte >= 0x80 is sign-extended
 * before the XOR (0xFFFFFF00 | byte). Keys made only of ASCII hash as in textbook FNV-1a/32
 * with that odd basis; keys with high bytes (UTF-8, binary) only land where nutcracker puts them
 * because of the sign extension.
 */

const FNV_OFFSET_LOW32 = 0x84222325;
const FNV_PRIME_LOW32 = 0x000001b3;

/** Unsigned 32-bit twemproxy fnv1a_64 of `buf[start, end)`. */
export function fnv1a64Twemproxy(buf: Uint8Array, start = 0, end: number = buf.length): number {
  if (start < 0 || end > buf.length || start > end) {
    throw new RangeError(`fnv1a64Twemproxy: bad range [${start}, ${end}) for ${buf.length} bytes`);
  }
  let h = FNV_OFFSET_LOW32 | 0;
  for (let i = start; i < end; i++) {
    // `(b << 24) >> 24` is the signed-char value of the byte; XOR and multiply stay in int32.
    h = Math.imul(h ^ ((buf[i]! << 24) >> 24), FNV_PRIME_LOW32);
  }
  return h >>> 0;
}
