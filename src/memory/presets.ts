import type { ModelSpec } from './architecture.js';
import { presetConfig, presetPublishedPrecision } from '../spec/presets.js';

/** A preset as a model to plan: its published config.json, parsed by the one spec parser. */
export function presetModel(name: string): ModelSpec {
  const publishedPrecision = presetPublishedPrecision(name);
  return { name: name.toLowerCase(), source: 'preset', architecture: presetConfig(name), ...(publishedPrecision && { publishedPrecision }) };
}
