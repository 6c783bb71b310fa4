/** cos and sin tables for `count` positions from `start`, each row [cat(freqs, freqs)] of headDim. */
export interface RopeTables {
  cos: Float32Array;
  sin: Float32Array;
  count: number;
  headDim: number;
}

export function ropeTables(inverseFrequencies: Float32Array, start: number, count: number): RopeTables {
  const half = inverseFrequencies.length;
  const headDim = half * 2;
  const cos = new Float32Array(count * headDim);
  const sin = new Float32Array(count * headDim);
  for (let p = 0; p < count; p++) {
    for (let i = 0; i < half; i++) {
      // HF multiplies position by frequency in float32, then takes cos/sin of that float32 angle.
      const angle = Math.fround((start + p) * inverseFrequencies[i]!);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[p * headDim + i] = c;
      cos[p * headDim + i + half] = c;
      sin[p * headDim + i] = s;
      sin[p * headDim + i + half] = s;
    }
  }
  return { cos, sin, count, headDim };
}

/** The tables of several runs of positions, one after another (a batch of sequences, each at its own positions). */
export function concatenateRopeTables(tables: readonly RopeTables[]): RopeTables {
  if (tables.length === 1) return tables[0]!;
  const count = tables.reduce((total, table) => total + table.count, 0);
  const headDim = tables[0]!.headDim;
  const cos = new Float32Array(count * headDim);
  const sin = new Float32Array(count * headDim);
  let offset = 0;
  for (const table of tables) {
    cos.set(table.cos, offset);
    sin.set(table.sin, offset);
    offset += table.cos.length;
  }
  return { cos, sin, count, headDim };
}
