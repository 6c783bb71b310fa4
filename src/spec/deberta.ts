/**
 * The DeBERTa-v2 sequence classifier (Meta's Prompt Guard) as data: its sizes, the tensors of its
 * checkpoint, and the published Prompt Guard models. guard/deberta.ts loads by this table; the
 * memory planner counts by it.
 */

export interface DebertaDimensions {
  hiddenSize: number;
  numLayers: number;
  intermediateSize: number;
  vocabSize: number;
  /** Relative-position buckets on each side: rel_embeddings has 2 × this many rows. */
  positionBuckets: number;
  numLabels: number;
}

export type DebertaTensorRole = 'embedding' | 'attention' | 'mlp' | 'norm' | 'relative' | 'head';

export interface DebertaTensor {
  name: string;
  /** As HF's state_dict stores it: nn.Linear weights [out, in]. */
  shape: number[];
  role: DebertaTensorRole;
}

/** Every tensor of a DebertaV2ForSequenceClassification checkpoint, in the order the model uses them. */
export function debertaTensors(d: DebertaDimensions): DebertaTensor[] {
  const H = d.hiddenSize;
  const linear = (prefix: string, out: number, input: number, role: DebertaTensorRole): DebertaTensor[] => [
    { name: `${prefix}.weight`, shape: [out, input], role },
    { name: `${prefix}.bias`, shape: [out], role },
  ];
  const layerNorm = (prefix: string): DebertaTensor[] => [
    { name: `${prefix}.weight`, shape: [H], role: 'norm' },
    { name: `${prefix}.bias`, shape: [H], role: 'norm' },
  ];
  const layers = Array.from({ length: d.numLayers }, (_, n) => {
    const prefix = `deberta.encoder.layer.${n}`;
    return [
      ...linear(`${prefix}.attention.self.query_proj`, H, H, 'attention'),
      ...linear(`${prefix}.attention.self.key_proj`, H, H, 'attention'),
      ...linear(`${prefix}.attention.self.value_proj`, H, H, 'attention'),
      ...linear(`${prefix}.attention.output.dense`, H, H, 'attention'),
      ...layerNorm(`${prefix}.attention.output.LayerNorm`),
      ...linear(`${prefix}.intermediate.dense`, d.intermediateSize, H, 'mlp'),
      ...linear(`${prefix}.output.dense`, H, d.intermediateSize, 'mlp'),
      ...layerNorm(`${prefix}.output.LayerNorm`),
    ];
  }).flat();
  return [
    { name: 'deberta.embeddings.word_embeddings.weight', shape: [d.vocabSize, H], role: 'embedding' },
    ...layerNorm('deberta.embeddings.LayerNorm'),
    ...layers,
    { name: 'deberta.encoder.rel_embeddings.weight', shape: [2 * d.positionBuckets, H], role: 'relative' },
    ...layerNorm('deberta.encoder.LayerNorm'),
    ...linear('pooler.dense', H, H, 'head'),
    ...linear('classifier', d.numLabels, H, 'head'),
  ];
}

/**
 * Meta's Prompt Guard models, from their config.json files: Prompt Guard 1 (86M) and Prompt
 * Guard 2 86M are mDeBERTa-v3-base (250k-piece multilingual vocabulary), Prompt Guard 2 22M is
 * DeBERTa-v3-xsmall (128k English pieces). The names count the backbone, without the embeddings.
 */
export const PROMPT_GUARD_PRESETS: Readonly<Record<string, DebertaDimensions>> = {
  'prompt-guard-86m': { hiddenSize: 768, numLayers: 12, intermediateSize: 3072, vocabSize: 251000, positionBuckets: 256, numLabels: 3 },
  'llama-prompt-guard-2-86m': { hiddenSize: 768, numLayers: 12, intermediateSize: 3072, vocabSize: 251000, positionBuckets: 256, numLabels: 2 },
  'llama-prompt-guard-2-22m': { hiddenSize: 384, numLayers: 12, intermediateSize: 1536, vocabSize: 128100, positionBuckets: 256, numLabels: 2 },
};
