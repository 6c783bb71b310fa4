import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compareEngines, runEngine, type EngineFigures } from '../src/bench/compare.js';
import { deriveRows, describeComparison, markdownTable, type ComparedRow } from '../src/bench/compare-table.js';
import { withCompetingLoad } from '../src/bench/competing-load.js';
import { mixFormat, writeSyntheticGguf } from '../src/bench/synthetic-gguf.js';
import { round } from '../src/cli/timings.js';
import { SyntheticWeights } from '../src/engine/synthetic.js';
import { GgmlType, readGgufHeader } from '../src/formats/gguf.js';
import { presetConfig } from '../src/spec/presets.js';
import { GGUF_LLAMACPP, LLAMA_TOKENIZER } from './fixtures.js';
import { herd } from './herd-cli.js';

// herd bench --compare's machinery without llama.cpp: the child processes (herd's built CLI, so
// `npm run build` first), the busy loops, the derived figures and the tables. No speed is checked.
const Q8_FILE = path.join(GGUF_LLAMACPP, 'model-Q8_0.gguf');
const run = { file: Q8_FILE, promptTokens: 4, genTokens: 2, threads: 1 };

/** Whether a process id still names a process (signal 0 only checks). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('each engine in a child process of its own', () => {
  test('herd-native and herd-wasm run herd with their backend and report their figures and their own peak RSS', async () => {
    const { rows } = await compareEngines({ ...run, promptTokens: [4, 6], engines: ['herd-native', 'herd-wasm'], competingLoad: 0 });
    expect(rows.map((row) => [row.engine, row.prompt_tokens, row.available])).toEqual([
      ['herd-native', 4, true], ['herd-wasm', 4, true], ['herd-native', 6, true], ['herd-wasm', 6, true],
    ]);
    const measured = rows as Array<Extract<EngineFigures, { available: true }>>;
    expect(measured.map((row) => row.detail)).toEqual(['native', 'kernels', 'native', 'kernels']);
    for (const row of measured) {
      expect(row.prefill_tokens_per_second).toBeGreaterThan(0);
      expect(row.decode_tokens_per_second).toBeGreaterThan(0);
      // A Node process holding a model: more than its file's bytes of weights read per token, which live in it.
      expect(row.peak_rss_bytes).toBeGreaterThan(row.weight_bytes_per_token!);
    }
  });

  test('an engine that cannot run is a row that says why, not a failure of the whole comparison', async () => {
    process.env.HERD_NATIVE = '0';
    try {
      expect(await runEngine({ ...run, engine: 'herd-native' })).toEqual({ engine: 'herd-native', prompt_tokens: 4, available: false, reason: expect.stringMatching(/HERD_NATIVE=0/) });
    } finally {
      delete process.env.HERD_NATIVE;
    }
    const missing = path.join(os.tmpdir(), 'herd-no-such-model.gguf');
    // llama.cpp's runner fails on the file before it needs node-llama-cpp.
    expect(await runEngine({ ...run, file: missing, engine: 'llama.cpp' })).toEqual({ engine: 'llama.cpp', prompt_tokens: 4, available: false, reason: expect.stringContaining(missing) });
  });
});

describe('--competing-load', () => {
  test('busy loops run during the work and are gone afterwards', async () => {
    const pids = await withCompetingLoad(2, async (children) => {
      expect(children.every(alive)).toBe(true);
      return children;
    });
    expect(pids).toHaveLength(2);
    expect(pids.filter(alive)).toEqual([]);
  });

  test('they are stopped when the work fails too, and the failure comes through', async () => {
    let pids: number[] = [];
    await expect(withCompetingLoad(1, async (children) => {
      pids = children;
      throw new Error('engine crashed');
    })).rejects.toThrow('engine crashed');
    expect(pids).toHaveLength(1);
    expect(pids.filter(alive)).toEqual([]);
  });
});

describe('figures derived from the engines\' rows, and the tables', () => {
  const rows: EngineFigures[] = [
    { engine: 'herd-native', prompt_tokens: 128, available: true, detail: 'native', load_ms: 900, prefill_tokens_per_second: 150, decode_tokens_per_second: 20, weight_bytes_per_token: 1.3e9, peak_rss_bytes: 1.5 * 2 ** 30 },
    { engine: 'herd-wasm', prompt_tokens: 128, available: false, reason: 'no usable backend' },
    { engine: 'llama.cpp', prompt_tokens: 128, available: true, detail: 'llama.cpp 3.21.1 (node-llama-cpp)', load_ms: 500, prefill_tokens_per_second: 200, decode_tokens_per_second: 16, peak_rss_bytes: 1.4 * 2 ** 30 },
  ];
  const derived = deriveRows(rows, 26e9);

  test('ratios to llama.cpp on the same prompt, read rates from the file\'s bytes per token, bandwidth fractions', () => {
    expect(derived[0]).toMatchObject({ prefill_ratio: 0.75, decode_ratio: 1.25, decode_bytes_per_second: 26e9, bandwidth_fraction: 1 });
    expect(derived[1]).toEqual(rows[1]);
    // llama.cpp reads the same file: 1.3 GB a token × 16 tokens/s = 20.8 GB/s = 0.8 of 26 GB/s.
    expect(derived[2]).toMatchObject({ decode_bytes_per_second: 20.8e9, bandwidth_fraction: 0.8 });
    expect(derived[2]).not.toHaveProperty('decode_ratio');
  });

  test('the terminal table aligns the figures and says why an engine was not measured', () => {
    const text = describeComparison('model.gguf on 2 threads', derived, [
      { engine: 'herd-native', available: true, idle_decode_tokens_per_second: 20, loaded_decode_tokens_per_second: 11, fraction: 0.55 },
    ]);
    expect(text.split('\n')).toEqual([
      'model.gguf on 2 threads',
      'engine       prompt  prefill tok/s  ×llama.cpp  decode tok/s  ×llama.cpp  decode GB/s  bandwidth  peak RSS',
      'herd-native     128          150.0       0.75×          20.0       1.25×         26.0      100 %  1.50 GiB',
      'herd-wasm  128  not measured: no usable backend',
      'llama.cpp       128          200.0                      16.0                     20.8       80 %  1.40 GiB',
      'busy machine  herd-native: decode 20.0 tok/s idle, 11.0 tok/s loaded (55 % kept)',
    ]);
  });

  test('the markdown table has a row per format, threads and engine, and the busy-machine table after it', () => {
    const table = markdownTable([
      { label: 'Q8_0', threads: 1, rows: derived },
      { label: 'Q4_0', threads: 2, rows: [{ ...derived[0]!, note: 'widened Q6_K' } as ComparedRow], loaded: [{ engine: 'llama.cpp', available: false, reason: 'not installed' }] },
    ]).split('\n');
    expect(table.slice(0, 2)).toEqual([
      '| format | threads | engine | prompt | prefill tok/s | ×llama.cpp | decode tok/s | ×llama.cpp | decode GB/s | bandwidth | peak RSS |',
      '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]);
    expect(table.slice(2, 6)).toEqual([
      '| Q8_0 | 1 | herd-native | 128 | 150.0 | 0.75× | 20.0 | 1.25× | 26.0 | 100 % | 1.50 GiB |',
      '| Q8_0 | 1 | herd-wasm | 128 | not measured: no usable backend |  |  |  |  |  |  |',
      '| Q8_0 | 1 | llama.cpp | 128 | 200.0 |  | 16.0 |  | 20.8 | 80 % | 1.40 GiB |',
      '| Q4_0 | 2 | herd-native | 128 | 150.0 | 0.75× | 20.0 | 1.25× | 26.0 | 100 % | 1.50 GiB |',
    ]);
    expect(table.slice(6)).toEqual(['', '- Q4_0, herd-native: widened Q6_K', '', '| format | threads | engine | idle decode tok/s | loaded decode tok/s | kept |', '|---|---:|---|---:|---:|---:|', '| Q4_0 | 2 | llama.cpp | not measured: not installed |  |  |']);
  });
});

describe('--synthetic --format q4_k_m: llama.cpp\'s Q4_K_M mix', () => {
  // llama.cpp's use_more_bits for n layers: layers below n/8, from 7n/8, and every third from n/8 + 2.
  test('on the 1B shape: Q6_K for the tied output and the attn_v and ffn_down of layers 0, 1, 4, 7, 10, 13, 14, 15', () => {
    const config = presetConfig('llama-3.2-1b');
    const formatOf = mixFormat(config, 'Q4_K_M') as (name: string, shape: readonly number[]) => string;
    const sixBitLayers = Array.from({ length: 16 }, (_, layer) => layer).filter((layer) => formatOf(`model.layers.${layer}.self_attn.v_proj.weight`, [512, 2048]) === 'Q6_K');
    expect(sixBitLayers).toEqual([0, 1, 4, 7, 10, 13, 14, 15]);
    expect(Array.from({ length: 16 }, (_, layer) => formatOf(`model.layers.${layer}.mlp.down_proj.weight`, [2048, 8192])).filter((f) => f === 'Q6_K')).toHaveLength(8);
    expect(formatOf('model.embed_tokens.weight', [128256, 2048])).toBe('Q6_K');
    expect(formatOf('model.layers.4.self_attn.q_proj.weight', [2048, 2048])).toBe('Q4_K');
    expect(formatOf('model.layers.4.mlp.gate_proj.weight', [8192, 2048])).toBe('Q4_K');
  });

  test('a GGUF written in the mix stores each tensor in its type and declares file type 15 (MOSTLY_Q4_K_M)', () => {
    const config = { ...presetConfig('llama-3.2-1b'), hiddenSize: 256, intermediateSize: 512, numHiddenLayers: 8, numAttentionHeads: 4, numKeyValueHeads: 2 };
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-bench-mix-'));
    try {
      const file = path.join(dir, 'mix.gguf');
      writeSyntheticGguf(file, config, new SyntheticWeights(config, mixFormat(config, 'Q4_K_M')), LLAMA_TOKENIZER, 'mix', 'Q4_K_M');
      const header = readGgufHeader(file);
      const type = (name: string) => header.tensors.get(name)!.type;
      // 8 layers: more bits for layer 0 (below 1), layer 7 (from 7) and layers 3 and 6.
      expect([0, 1, 2, 3, 4, 5, 6, 7].map((layer) => GgmlType[type(`blk.${layer}.attn_v.weight`)])).toEqual(['Q6_K', 'Q4_K', 'Q4_K', 'Q6_K', 'Q4_K', 'Q4_K', 'Q6_K', 'Q6_K']);
      expect([type('token_embd.weight'), type('blk.2.ffn_up.weight'), type('blk.2.attn_norm.weight')]).toEqual([GgmlType.Q6_K, GgmlType.Q4_K, GgmlType.F32]);
      expect(header.metadata.get('general.file_type')).toBe(15);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bench --compare flags', () => {
  test('several prompt lengths need --compare; a length that is not a count is a usage error', () => {
    const several = herd(['bench', '--prompt-tokens', '4,8']);
    expect([several.status, several.stderr]).toEqual([2, 'herd: several --prompt-tokens lengths need --compare; without it, give one\n']);
    const bad = herd(['bench', '--model', Q8_FILE, '--compare', 'llama.cpp', '--prompt-tokens', '4,x']);
    expect([bad.status, bad.stderr]).toEqual([2, 'herd: --prompt-tokens takes token counts separated by commas, such as 128,1000; got "4,x"\n']);
    const engines = herd(['bench', '--model', Q8_FILE, '--compare', 'llama.cpp', '--engines', 'herd-gpu']);
    expect([engines.status, engines.stderr]).toEqual([2, 'herd: --engines takes herd-native, herd-wasm, llama.cpp, separated by commas; got "herd-gpu"\n']);
  });
});

describe('bench --bandwidth', () => {
  test("the native probe when the addon loads, else the WASM kernels'; the fraction is decoding's bytes per second over the read rate", () => {
    for (const [env, probe] of [[{}, 'native'], [{ HERD_NATIVE: '0' }, 'wasm']] as const) {
      const result = herd(['bench', '--json', '--model', Q8_FILE, '--prompt-tokens', '4', '--gen-tokens', '2', '--threads', '2', '--bandwidth'], undefined, env);
      expect(result.stderr).toBe('');
      const report = JSON.parse(result.stdout) as Record<string, number>;
      expect(report).toMatchObject({ bandwidth_probe: probe, bandwidth_threads: 2 });
      expect(report.bandwidth_fraction).toBe(round(report.decode_bytes_per_second! / report.read_bytes_per_second!));
    }
  });
});
