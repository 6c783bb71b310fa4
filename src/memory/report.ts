import type { FitResult } from './fit.js';
import type { Hardware } from './hardware.js';
import type { InferenceRow, MemoryPlan, TrainingRow } from './plan.js';
import { type ComparisonCell, INFERENCE_TOLERANCE, TRAINING_TOLERANCE } from './post-tables.js';
import type { Cell, Column, Section } from './table.js';
import { type ByteUnit, formatBytes } from './units.js';

export const left = (header: string): Column => ({ header, align: 'left' });
export const right = (header: string): Column => ({ header, align: 'right' });
export const count = (value: number): string => value.toLocaleString('en-US');

export function unitNote(unit: ByteUnit): string {
  return unit === 'GiB' ? 'Sizes in GiB (1 GiB = 2^30 bytes = 1.074 GB).' : 'Sizes in GB (1 GB = 10^9 bytes = 0.931 GiB).';
}

export function planSections(plan: MemoryPlan, unit: ByteUnit): Section[] {
  return [modelSection(plan), inferenceSection(plan, unit), ...(plan.training.length > 0 ? [trainingSection(plan, unit)] : [])];
}

function modelSection(plan: MemoryPlan): Section {
  const { architecture: arch, parameters } = plan.model;
  const row = (name: string, value: string): Cell[] => [{ text: name }, { text: value }];
  return {
    title: `Model: ${plan.model.name}`,
    columns: [left('Component'), right('Parameters')],
    rows: [
      row('embeddings', count(parameters.embeddings)),
      row(`attention (${arch.numAttentionHeads} q heads, ${arch.numKeyValueHeads} kv heads)`, count(parameters.attention)),
      row('MLP (gate, up, down)', count(parameters.mlp)),
      row('norms', count(parameters.norms)),
      row(arch.tieWordEmbeddings ? 'output head (tied to embeddings)' : 'output head', count(parameters.outputHead)),
      [{ text: 'total', tone: 'strong' }, { text: count(parameters.total), tone: 'strong' }],
    ],
    notes: [
      `source: ${plan.model.source}; ${arch.numHiddenLayers} layers, hidden ${arch.hiddenSize}, MLP ${arch.intermediateSize}, head dim ${arch.headDim}, vocab ${arch.vocabSize}, max context ${count(arch.maxPositionEmbeddings)} tokens`,
    ],
  };
}

function inferenceSection(plan: MemoryPlan, unit: ByteUnit): Section {
  const hardware = plan.hardware;
  const columns = [left('Precision'), right('Context'), right('Batch'), right('Weights'), right('KV cache'), right('Workspace'), right('Total')];
  if (hardware) columns.push(left('Verdict'), right('Max context'));
  const rows = plan.inference.map((row) => inferenceCells(row, unit, hardware));
  const formats = [...new Map(plan.inference.map((row) => [row.precision, row])).values()].map(
    (row) => `${row.precision}: ${row.description} (${row.weightFormats.map((share) => `${formatBytes(share.bytes, unit)} ${share.format}`).join(' + ')})`,
  );
  return {
    title: `Inference memory (${unit})`,
    columns,
    rows,
    notes: [
      unitNote(unit),
      `KV cache (${plan.kvCache.dtype}) = ${plan.kvCache.formula} = ${count(plan.kvCache.bytesPerToken)} bytes per token × context × batch.`,
      'Workspace: 512-token prompt chunks (residual, norm, SwiGLU gate/up in 16-bit) plus fp32 last-position logits.',
      ...formats,
      ...(hardware ? [hardwareNote(hardware, unit)] : []),
    ],
  };
}

function inferenceCells(row: InferenceRow, unit: ByteUnit, hardware: Hardware | undefined): Cell[] {
  const cells: Cell[] = [
    { text: row.precision },
    { text: count(row.context) },
    { text: String(row.batch) },
    { text: formatBytes(row.weightsBytes, unit) },
    { text: formatBytes(row.kvCacheBytes, unit) },
    { text: formatBytes(row.workspaceBytes, unit) },
    { text: formatBytes(row.totalBytes, unit), tone: 'strong' },
  ];
  if (hardware && row.fit) cells.push(verdictCell(row.fit, hardware, 'context'), { text: count(row.fit.maxTokens) });
  return cells;
}

function trainingSection(plan: MemoryPlan, unit: ByteUnit): Section {
  const hardware = plan.hardware;
  const rows: Cell[][] = plan.training.flatMap((row) => trainingCells(row, unit, hardware));
  const first = plan.training[0];
  return {
    title: `Training memory (${unit})`,
    columns: [left('Method'), left('Term'), right('Size'), left('Formula')],
    rows,
    notes: [
      unitNote(unit),
      ...(first
        ? [
            `Activations for batch ${first.batch} × sequence ${count(first.seqLen)}: ${formatBytes(first.activations.checkpointedBytes, unit)} with gradient checkpointing, ${formatBytes(first.activations.fullBytes, unit)} without.`,
          ]
        : []),
      ...(hardware ? [hardwareNote(hardware, unit), 'Across devices, weights, gradients and optimizer states are sharded (FSDP / ZeRO-3); activations are per device.'] : []),
    ],
  };
}

function trainingCells(row: TrainingRow, unit: ByteUnit, hardware: Hardware | undefined): Cell[][] {
  const method = `${row.method} (${count(row.trainableParameters)} trainable)`;
  const terms: Cell[][] = row.terms.map((term, index) => [
    { text: index === 0 ? method : '' },
    { text: term.name },
    { text: formatBytes(term.bytes, unit) },
    { text: term.formula, tone: 'dim' },
  ]);
  const verdict = hardware && row.fit ? verdictCell(row.fit, hardware, 'sequence') : { text: '' };
  terms.push([{ text: '' }, { text: 'total', tone: 'strong' }, { text: formatBytes(row.totalBytes, unit), tone: 'strong' }, verdict]);
  return terms;
}

function hardwareNote(hardware: Hardware, unit: ByteUnit): string {
  return `Hardware: ${hardware.devices} × ${hardware.label}, ${formatBytes(hardware.bytesPerDevice, unit)} each, ${formatBytes(hardware.reserveBytes, unit)} reserved per device for driver and runtime.`;
}

/** fits / fits with a smaller context (or sequence) / needs N devices. */
export function verdictText(fit: FitResult, hardware: Hardware, noun: 'context' | 'sequence'): string {
  const devices = (n: number): string => `${n} × ${hardware.label}`;
  if (fit.fits) return `fits on ${devices(hardware.devices)}`;
  const more = fit.devicesNeeded === null ? `no number of ${hardware.label} holds it` : `needs ${devices(fit.devicesNeeded)}`;
  if (fit.maxTokens > 0) return `fits with ${noun} ≤ ${count(fit.maxTokens)}; ${more}`;
  return more;
}

function verdictCell(fit: FitResult, hardware: Hardware, noun: 'context' | 'sequence'): Cell {
  return { text: verdictText(fit, hardware, noun), tone: fit.fits ? 'good' : fit.maxTokens > 0 ? 'warn' : 'bad' };
}

const TABLE_TITLES: Record<ComparisonCell['table'], string> = {
  inference: 'Llama 3.1 post vs herd: inference memory for the weights (GB)',
  'kv-cache': 'Llama 3.1 post vs herd: KV cache, fp16, batch 1 (GiB)',
  training: 'Llama 3.1 post vs herd: training memory (GB)',
};

const TABLE_NOTES: Record<ComparisonCell['table'], string[]> = {
  inference: [
    'GB = 10^9 bytes. The post multiplies the nominal sizes (8B, 70B, 405B) by 2 / 1 / 0.5 bytes and rounds to whole GB; herd uses the exact parameter counts.',
    `A cell matches when the nominal product rounds to the post's figure and the exact figure is within ${INFERENCE_TOLERANCE * 100}%.`,
  ],
  'kv-cache': [
    "GiB = 2^30 bytes. The post's 1k is 1,024 tokens but its 16k and 128k are 16,000 and 128,000 tokens; herd uses the same counts here.",
    'A cell matches when herd\'s value rounds to the printed figure (within half a unit of its last digit).',
    "The post's 405B row is exactly twice 126 layers × 8 kv heads × 128 × 2 bytes per token; herd prints the consistent figure and flags the row.",
  ],
  training: [
    'GB = 10^9 bytes (3.25 TB = 3,250 GB). herd: full = bf16 weights, gradients and AdamW moments (8 bytes per parameter);',
    'LoRA / QLoRA = frozen bf16 / nf4 base + rank-16 adapters on all seven projections with fp32 AdamW states (16 bytes per adapter parameter);',
    `activations excluded because the post gives no batch or sequence length. Tolerance ±${TRAINING_TOLERANCE * 100}%: the post's cells are rounded estimates (see docs/memory.md).`,
  ],
};

export function comparisonSections(cells: ComparisonCell[]): Section[] {
  return (Object.keys(TABLE_TITLES) as ComparisonCell['table'][]).map((table) => ({
    title: TABLE_TITLES[table],
    columns: [left('Model'), left('Column'), right('Post'), right('herd'), right('Difference'), right('Diff %'), left('Status')],
    rows: cells.filter((cell) => cell.table === table).map(comparisonRow),
    notes: TABLE_NOTES[table],
  }));
}

function comparisonRow(cell: ComparisonCell): Cell[] {
  const decimals = cell.unit === 'GiB' ? 4 : 2;
  const status: Cell = cell.matches
    ? { text: 'matches', tone: 'good' }
    : cell.note
      ? { text: `flagged: ${cell.note}`, tone: 'warn' }
      : { text: 'outside tolerance', tone: 'bad' };
  return [
    { text: cell.model },
    { text: cell.column },
    { text: String(cell.post) },
    { text: cell.computed.toFixed(decimals) },
    { text: `${cell.difference >= 0 ? '+' : ''}${cell.difference.toFixed(decimals)}` },
    { text: `${cell.relativeDifference >= 0 ? '+' : ''}${(cell.relativeDifference * 100).toFixed(1)}%` },
    status,
  ];
}

export interface Measurement {
  peakRssBytes: number;
  rssBeforeLoadBytes: number;
  estimateBytes: number;
  estimateLabel: string;
  method: string;
}

export function measurementSection(measurement: Measurement, unit: ByteUnit): Section {
  return {
    title: `Measured vs estimated (${unit})`,
    columns: [left('What'), right('Size')],
    rows: [
      [{ text: 'measured peak RSS' }, { text: formatBytes(measurement.peakRssBytes, unit), tone: 'strong' }],
      [{ text: 'measured peak RSS less RSS before loading' }, { text: formatBytes(measurement.peakRssBytes - measurement.rssBeforeLoadBytes, unit), tone: 'strong' }],
      [{ text: `estimate: ${measurement.estimateLabel}` }, { text: formatBytes(measurement.estimateBytes, unit) }],
    ],
    notes: [unitNote(unit), `Measured by ${measurement.method}. RSS also counts the runtime, tokenizer and code, which the estimate leaves out.`],
  };
}
