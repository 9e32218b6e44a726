/**
 * Redis Cluster key slots: CRC16-CCITT in its XMODEM form (polynomial 0x1021, initial value 0,
 * no bit reflection, no final XOR) of the key, or of its `{tag}`, modulo 16384.
 *
 *   "123456789" -> crc 0x31C3     "foo" -> slot 12182     "{user1000}.following" -> slot of "user1000"
 */

/** the number of slots in a Redis Cluster */
export const SLOTS = 16384;

/** CRC of each byte value shifted into the top of the register, built once */
const TABLE = ((): Uint16Array => {
  const table = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n << 8;
    for (let bit = 0; bit < 8; bit++) c = c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1;
    table[n] = c; // the Uint16Array keeps the low 16 bits
  }
  return table;
})();

/** CRC16/XMODEM of `buf[start, end)`, as an unsigned 16-bit number. */
export function crc16(buf: Uint8Array, start = 0, end: number = buf.length): number {
  if (start < 0 || end > buf.length || start > end) {
    throw new RangeError(`crc16: bad range [${start}, ${end}) for ${buf.length} bytes`);
  }
  let crc = 0;
  for (let i = start; i < end; i++) {
    crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >>> 8) ^ buf[i]!) & 0xff]!;
  }
  return crc;
}

const OPEN = 0x7b; // {
const CLOSE = 0x7d; // }

/**
 * The slot of `key`, by Redis's rule (keyHashSlot in cluster.c): when the key has a `{` and,
 * after it, a `}` with at least one byte between them, only the bytes between the first `{` and
 * the first `}` after it are hashed; otherwise the whole key. `[start, end)`: the key's bytes
 * in a larger buffer. Allocates nothing.
 *
 *   "foo{}{bar}" -> whole key     "foo{{bar}}zap" -> "{bar"     "foo{bar}{zap}" -> "bar"
 */
export function keySlot(key: Uint8Array, start = 0, end: number = key.length): number {
  // a loop, not Buffer#indexOf: keys are short, and a native call costs more than the scan
  let open = start;
  while (open < end && key[open] !== OPEN) open++;
  if (open < end) {
    let close = open + 1;
    while (close < end && key[close] !== CLOSE) close++;
    if (close < end && close > open + 1) return crc16(key, open + 1, close) & (SLOTS - 1);
  }
  return crc16(key, start, end) & (SLOTS - 1);
}
