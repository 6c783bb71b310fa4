import { Flags } from '@oclif/core';
import type { GenerationDefaults } from '../engine/load.js';
import type { SamplingOptions } from '../engine/sampling.js';
import { numberFlag } from './flags.js';

/** Sampling flags shared by every command that generates (generate, chat). */
export const samplingFlags = {
  temperature: numberFlag({ description: 'Sampling temperature; 0 is greedy. Default: generation_config.json, else 0.', min: 0 }),
  'top-p': numberFlag({ description: 'Nucleus sampling: keep the smallest set of tokens whose probability reaches p.', min: 0, max: 1 }),
  'top-k': Flags.integer({ description: 'Keep the k most likely tokens (0: off). Default: generation_config.json, else 50 when sampling, as transformers.', min: 0 }),
  'min-p': numberFlag({ description: 'Drop tokens less likely than min-p × the most likely one.', min: 0, max: 1 }),
  'repetition-penalty': numberFlag({ description: 'Penalty (> 1) on tokens already in the prompt or output.', min: 0.01 }),
  seed: Flags.integer({ description: 'Random seed; the same seed gives the same output. Default: random (reported in --json).' }),
};

export interface SamplingFlags {
  temperature?: number;
  'top-p'?: number;
  'top-k'?: number;
  'min-p'?: number;
  'repetition-penalty'?: number;
  seed?: number;
}

/** Flags win; otherwise generation_config.json decides, as transformers' generate() does. */
export function samplingOptions(loaded: { generation: GenerationDefaults }, flags: SamplingFlags): SamplingOptions {
  const defaults = loaded.generation;
  const configTemperature = defaults.doSample ? (defaults.temperature ?? 1) : 0;
  return {
    temperature: flags.temperature ?? configTemperature,
    topP: flags['top-p'] ?? defaults.topP ?? 1,
    topK: flags['top-k'] ?? defaults.topK ?? 50,
    minP: flags['min-p'] ?? 0,
    repetitionPenalty: flags['repetition-penalty'] ?? defaults.repetitionPenalty ?? 1,
    seed: flags.seed ?? Math.floor(Math.random() * 2 ** 31),
  };
}
