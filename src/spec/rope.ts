import type { LlamaConfig } from './llama-config.js';

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

/** llama.cpp's rope_freqs for llama3 scaling: the divisor of each frequency (generate_extra_tensors). */
export function ropeFrequencyFactors(config: LlamaConfig): Float32Array | null {
  if (config.ropeScaling?.type !== 'llama3') return null;
  const scaled = ropeInverseFrequencies(config);
  const plain = ropeInverseFrequencies({ ...config, ropeScaling: null });
  return Float32Array.from(plain, (frequency, i) => frequency / scaled[i]!);
}
