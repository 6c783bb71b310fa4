import fs from 'node:fs';
import path from 'node:path';
import { HerdError } from '../errors.js';
import { readJsonFile } from '../formats/files.js';
import { PROMPT_GUARD_PRESETS, debertaTensors, type DebertaDimensions, type DebertaTensorRole } from '../spec/deberta.js';
import { count, left, right } from './report.js';
import type { Section } from './table.js';
import { formatBytes, type ByteUnit } from './units.js';

/**
 * herd memory for a DeBERTa-v2 classifier (Prompt Guard): exact parameters from the tensor table
 * and the memory of the weights. It has no KV cache and is not fine-tuned here, so that is all.
 */

export interface ClassifierPlan {
  name: string;
  source: string;
  dimensions: DebertaDimensions;
  parameters: Record<DebertaTensorRole, number> & { total: number };
  /** Weights as published (float32) and in bf16. */
  weights: Array<{ precision: 'fp32' | 'bf16'; bytes: number }>;
}

const DEBERTA_ARCHITECTURE = 'DebertaV2ForSequenceClassification';

/** A Prompt Guard preset name, or a folder (or its config.json) holding a DeBERTa-v2 classifier; undefined for anything else. */
export function resolveClassifier(input: string): { name: string; source: string; dimensions: DebertaDimensions } | undefined {
  const preset = PROMPT_GUARD_PRESETS[input.toLowerCase()];
  if (preset) return { name: input.toLowerCase(), source: 'preset', dimensions: preset };
  const file = fs.existsSync(input) && fs.statSync(input).isDirectory() ? path.join(input, 'config.json') : input;
  if (!file.endsWith('.json') || !fs.existsSync(file)) return undefined;
  const raw = readJsonFile(file, true) as Record<string, unknown>;
  if (!Array.isArray(raw.architectures) || !raw.architectures.includes(DEBERTA_ARCHITECTURE)) return undefined;
  const integer = (key: string, fallback?: number): number => {
    const value = raw[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isInteger(value)) throw new HerdError(`${file}: ${key} must be an integer, got ${JSON.stringify(raw[key])}`);
    return value;
  };
  const dimensions: DebertaDimensions = {
    hiddenSize: integer('hidden_size'),
    numLayers: integer('num_hidden_layers'),
    intermediateSize: integer('intermediate_size'),
    vocabSize: integer('vocab_size'),
    positionBuckets: integer('position_buckets'),
    numLabels: Object.keys((raw.id2label ?? {}) as object).length,
  };
  return { name: path.basename(path.dirname(path.resolve(file))), source: file, dimensions };
}

export function classifierPlan(model: { name: string; source: string; dimensions: DebertaDimensions }): ClassifierPlan {
  const parameters = { embedding: 0, attention: 0, mlp: 0, norm: 0, relative: 0, head: 0, total: 0 };
  for (const tensor of debertaTensors(model.dimensions)) {
    const elements = tensor.shape.reduce((product, size) => product * size, 1);
    parameters[tensor.role] += elements;
    parameters.total += elements;
  }
  return { ...model, parameters, weights: [{ precision: 'fp32', bytes: 4 * parameters.total }, { precision: 'bf16', bytes: 2 * parameters.total }] };
}

export function classifierSections(plan: ClassifierPlan, unit: ByteUnit): Section[] {
  const p = plan.parameters;
  const d = plan.dimensions;
  const row = (name: string, value: number, strong = false) => [{ text: name, ...(strong && { tone: 'strong' as const }) }, { text: count(value), ...(strong && { tone: 'strong' as const }) }];
  return [
    {
      title: `Model: ${plan.name} (DeBERTa-v2 classifier)`,
      columns: [left('Component'), right('Parameters')],
      rows: [
        row('word embeddings', p.embedding),
        row('attention (query, key, value, output)', p.attention),
        row('MLP (intermediate, output)', p.mlp),
        row('relative position embeddings', p.relative),
        row('LayerNorms', p.norm),
        row(`pooler and classifier (${d.numLabels} labels)`, p.head),
        row('total', p.total, true),
      ],
      notes: [`source: ${plan.source}; ${d.numLayers} layers, hidden ${d.hiddenSize}, MLP ${d.intermediateSize}, vocab ${d.vocabSize}, ${2 * d.positionBuckets} relative buckets; backbone without embeddings ${count(p.total - p.embedding)}`],
    },
    {
      title: 'Weights',
      columns: [left('Precision'), right('Memory')],
      rows: plan.weights.map((entry) => [{ text: entry.precision }, { text: formatBytes(entry.bytes, unit) }]),
      notes: [],
    },
  ];
}
