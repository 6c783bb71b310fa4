import type { LlamaConfig } from './config.js';

/**
 * Rotary position embedding frequencies as transformers computes them
 * (`_compute_default_rope_parameters`, `_compute_llama3_parameters`, linear scaling), in float32.
 */
export function ropeInverseFrequencies(config: LlamaConfig): Float32Array {
  const dim = config.headDim;
  const inverse = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) inverse[i] = 1 / Math.fround(config.ropeTheta ** Math.fround((2 * i) / dim));
  const scaling = config.ropeScaling;
  if (scaling?.type === 'linear') return inverse.map((f) => f / scaling.factor);
  if (scaling?.type !== 'llama3') return inverse;

  // Llama 3.1: keep high frequencies, divide low frequencies by `factor`, interpolate between.
  const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: oldContext } = scaling;
  const lowFreqWavelength = oldContext / lowFreqFactor;
  const highFreqWavelength = oldContext / highFreqFactor;
  return inverse.map((frequency) => {
    const wavelength = (2 * Math.PI) / frequency;
    if (wavelength < highFreqWavelength) return frequency;
    if (wavelength > lowFreqWavelength) return frequency / factor;
    const smooth = (oldContext / wavelength - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
    return (1 - smooth) * (frequency / factor) + smooth * frequency;
  });
}

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
