/** IEEE 754 half precision, which safetensors F16 tensors and GGUF block scales use. */

/** One float's bits, without a typed array made per call (the GGUF writers call this for every weight and scale). */
const floatScratch = new Float32Array(1);
const floatScratchBits = new Uint32Array(floatScratch.buffer);

/** float → IEEE half, round to nearest even (as the F16C instruction and ggml do). */
export function floatToHalf(value: number): number {
  floatScratch[0] = value;
  return halfOfFloatBits(floatScratchBits[0]!);
}

/**
 * A float32 array as IEEE halves, read through a view of its bits. A loop, not
 * Uint16Array.from(data, map): V8 gathers a mapped typed array's source into a plain array first,
 * which aborts the process above ~134M elements (the 1B shape's 262M-weight embedding).
 */
export function floatsToHalves(data: Float32Array): Uint16Array {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const halves = new Uint16Array(data.length);
  for (let i = 0; i < bits.length; i++) halves[i] = halfOfFloatBits(bits[i]!);
  return halves;
}

/** The IEEE half nearest (ties to even) to the float32 with these bits. */
function halfOfFloatBits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - halfExponent;
    return sign | roundShift(mantissa, shift);
  }
  // A carry out of the mantissa correctly bumps the exponent (and may give infinity).
  return sign | ((halfExponent << 10) + roundShift(mantissa, 13));
}

function roundShift(value: number, shift: number): number {
  const half = 1 << (shift - 1);
  const remainder = value & ((1 << shift) - 1);
  let result = value >>> shift;
  if (remainder > half || (remainder === half && (result & 1) === 1)) result++;
  return result;
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
