import { HerdError } from '../errors.js';
import type { LlamaConfig } from '../spec/llama-config.js';

/**
 * What the model definition computes is Llama 3.1: no biases, SiLU. A config the spec can
 * describe but the engine cannot run is refused here, before any weight is read.
 */
export function checkRunnable(config: LlamaConfig, source: string): void {
  if (config.attentionBias || config.mlpBias) {
    throw new HerdError(`${source}: attention_bias / mlp_bias are not supported (Llama 3.1 has no biases)`, { kind: 'model' });
  }
  if (config.hiddenAct !== 'silu') {
    throw new HerdError(`${source}: hidden_act ${JSON.stringify(config.hiddenAct)} is not supported (Llama uses silu)`, { kind: 'model' });
  }
}
