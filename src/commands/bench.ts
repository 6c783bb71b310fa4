import { Flags } from '@oclif/core';
import { HerdCommand } from '../cli/base-command.js';
import { modelFlags } from '../cli/flags.js';
import { loadModelWithProgress } from '../cli/load.js';
import { describeTimings, measureTimings } from '../cli/timings.js';
import { HerdError } from '../errors.js';
import { generate } from '../engine/generate.js';
import { GREEDY } from '../engine/sampling.js';
import type { HerdTokenizer } from '../engine/tokenizer.js';

export default class Bench extends HerdCommand {
  static override summary = 'Measure load time, prefill and decode speed, and peak memory.';

  static override description = `Feeds a synthetic prompt of --prompt-tokens ordinary (non-special) token ids, then decodes --gen-tokens tokens greedily without stopping at eos. Prints figures; it is a benchmark, not a test.`;

  static override examples = ['<%= config.bin %> bench', '<%= config.bin %> bench --model ~/models/Llama-3.2-1B --prompt-tokens 512 --gen-tokens 128 --json'];

  static override flags = {
    ...modelFlags,
    'prompt-tokens': Flags.integer({ char: 'p', description: 'Prompt length in tokens.', default: 128, min: 1 }),
    'gen-tokens': Flags.integer({ char: 'g', description: 'Tokens to decode.', default: 64, min: 1 }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Bench);
    const loaded = await loadModelWithProgress(flags);
    const promptTokens = flags['prompt-tokens'];
    const genTokens = flags['gen-tokens'];
    const context = loaded.config.maxPositionEmbeddings;
    if (promptTokens + genTokens > context) {
      throw new HerdError(`--prompt-tokens + --gen-tokens (${promptTokens + genTokens}) exceed the model's context of ${context}`);
    }
    const result = generate(loaded.model, loaded.tokenizer, {
      promptIds: syntheticPrompt(loaded.tokenizer, loaded.config.vocabSize, promptTokens),
      maxNewTokens: genTokens,
      sampling: GREEDY,
      stopTokenIds: [],
      stopStrings: [],
      topLogprobs: 0,
    });
    const figures = { model: loaded.dir, backend: loaded.model.backendName, ...measureTimings(loaded, promptTokens, result) };
    this.log(flags.json ? JSON.stringify(figures) : describeTimings(figures, figures.backend).replaceAll(' · ', '\n'));
  }
}

/** Deterministic ordinary token ids spread over the vocabulary. */
function syntheticPrompt(tokenizer: HerdTokenizer, vocabSize: number, length: number): number[] {
  const ids: number[] = [];
  for (let step = 0; ids.length < length; step++) {
    const id = (step * 7919 + 17) % vocabSize;
    if (!tokenizer.isSpecial(id)) ids.push(id);
  }
  return ids;
}
