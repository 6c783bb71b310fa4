import fs from 'node:fs';
import path from 'node:path';
import { HerdTokenizer } from '../src/engine/tokenizer.js';
import { LLAMA_CHAT, STORIES, TINY_LLAMA, readJson } from './fixtures.js';
import { herd, storiesCopy } from './herd-cli.js';

function expectOneLineError(result: ReturnType<typeof herd>, pattern: RegExp): void {
  expect(result.status).not.toBe(0);
  expect(result.stdout).toBe('');
  expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(result.stderr).toMatch(pattern);
}

const reference = readJson<{ generated_ids: number[]; steps: Array<{ top5: Array<{ id: number; logprob: number }> }> }>(`${STORIES}/reference.json`);

describe('herd generate', () => {
  test('streams the continuation of the embedded model to stdout, without colour when piped', () => {
    const result = herd(['generate', 'Once upon a time', '--max-new-tokens', '12']);
    expect(result.status).toBe(0);
    // Reference text after "Once upon a time", 12 tokens: ", there was a little g|ir|l named Lily. She".
    expect(result.stdout).toBe(', there was a little girl named Lily. She\n');
    expect(result.stderr).toBe('');
  });

  test('--json reports ids, text, finish reason, timings and logprobs that match the reference', () => {
    const result = herd(['generate', '--raw', '--json', '--max-new-tokens', '6', '--logprobs', '5', 'Once upon a time']);
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout);
    // [BOS] Once upon a time = the reference's first four generated tokens.
    expect(report.prompt_ids).toEqual([1, ...reference.generated_ids.slice(0, 4)]);
    expect(report.generated_ids).toEqual(reference.generated_ids.slice(4, 10));
    expect(report.text).toBe(', there was a little g');
    expect(report.finish_reason).toBe('length');
    expect(report.timings).toEqual(expect.objectContaining({ load_ms: expect.any(Number), prefill_tokens_per_second: expect.any(Number), decode_tokens_per_second: expect.any(Number), peak_rss_bytes: expect.any(Number) }));
    report.logprobs.forEach((token: { top_logprobs: Array<{ id: number; logprob: number }> }, i: number) => {
      const expected = reference.steps[i + 4]!.top5;
      token.top_logprobs.forEach(({ id, logprob }, rank) => {
        expect(id).toBe(expected[rank]!.id);
        expect(Math.abs(logprob - expected[rank]!.logprob)).toBeLessThan(1e-4);
      });
    });
  });

  test('reads the prompt from stdin and stops at a --stop string', () => {
    const result = herd(['generate', '--json', '--stop', 'Lily', '--max-new-tokens', '40'], 'Once upon a time\n');
    const report = JSON.parse(result.stdout);
    expect(report.text).toBe(', there was a little girl named ');
    expect(report.finish_reason).toBe('stop');
    expect(report.stopped_by).toBe('Lily');
  });

  test("applies the model's chat template: the prompt Python jinja2 renders, with one BOS", () => {
    const result = herd(['generate', '--model', TINY_LLAMA, '--system', 'You are a helpful assistant.', '--date', '2024-07-26', '--json', '-n', '1', 'What is the capital of France?']);
    expect(result.status).toBe(0);
    const expected = fs.readFileSync(path.join(LLAMA_CHAT, 'expected/a_simple_system_user.txt'), 'utf8');
    const promptIds: number[] = JSON.parse(result.stdout).prompt_ids;
    expect(promptIds).toEqual(HerdTokenizer.fromDir(TINY_LLAMA).encode(expected, false));
    expect(promptIds.filter((id) => id === 128000)).toHaveLength(1);
    expect(promptIds.slice(0, 2)).toEqual([128000, 128006]);
  });

  test('--system without a chat template is refused', () => {
    expectOneLineError(herd(['generate', '--system', 'Be brief.', 'Once upon a time']), /^herd: --system needs a chat template/);
  });

  test('the same seed samples the same text', () => {
    const args = ['generate', '--json', '--temperature', '1', '--seed', '5', '--max-new-tokens', '30', 'Once upon a time'];
    expect(JSON.parse(herd(args).stdout).text).toBe(JSON.parse(herd(args).stdout).text);
  });
});

describe('bad input: one clear line and a non-zero exit', () => {
  test('truncated safetensors', () => {
    const dir = storiesCopy((d) => fs.truncateSync(path.join(d, 'model.safetensors'), 500000));
    expectOneLineError(herd(['generate', '--model', dir, 'hi']), /^herd: model\.safetensors: tensor model\.layers\.\S+ ends at byte \d+ but the file has 500000 bytes \(truncated\)\n$/);
  });

  test('a shape that contradicts config.json', () => {
    const dir = storiesCopy((d) => {
      const config = readJson<Record<string, unknown>>(path.join(d, 'config.json'));
      fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...config, num_key_value_heads: 8 }));
    });
    expectOneLineError(herd(['generate', '--model', dir, 'hi']), /^herd: model\.safetensors: tensor model\.layers\.0\.self_attn\.k_proj\.weight has shape \[32, 64\] but config\.json implies \[64, 64\]\n$/);
  });

  test('a missing tokenizer.json', () => {
    const dir = storiesCopy((d) => fs.rmSync(path.join(d, 'tokenizer.json')));
    expectOneLineError(herd(['generate', '--model', dir, 'hi']), /^herd: missing tokenizer\.json in \S+\n$/);
  });

  test('a prompt longer than max_position_embeddings', () => {
    // BOS + 200 × (Once, upon, a, time) + the trailing space's own token = 802.
    expectOneLineError(herd(['generate', '--raw', 'Once upon a time '.repeat(200)]), /^herd: the prompt has 802 tokens but the model's context \(max_position_embeddings\) is 512\n$/);
  });

  test('an unknown backend', () => {
    expectOneLineError(herd(['generate', '--backend', 'tpu', 'hi']), /^herd: unknown backend "tpu"; choose one of node-gpu, node, wasm, cpu, kernels, native, tfjs\n$/);
  });

  test('a model folder that does not exist', () => {
    expectOneLineError(herd(['generate', '--model', '/nonexistent/model', 'hi']), /^herd: model folder \/nonexistent\/model does not exist\n$/);
  });
});

describe('herd env and herd bench', () => {
  test('env reports every backend with why, and the automatic choices', () => {
    const report = JSON.parse(herd(['env', '--json']).stdout);
    expect(report.backends.map((b: { name: string }) => b.name)).toEqual(['node-gpu', 'node', 'wasm', 'cpu', 'kernels', 'native']);
    const wasm = report.backends.find((b: { name: string }) => b.name === 'wasm');
    expect(wasm).toEqual({ name: 'wasm', available: true, reason: expect.stringMatching(/^@tensorflow\/tfjs-backend-wasm \d/) });
    // Without tfjs-node-gpu (not installed here), 16-bit and quantized weights go to herd's native kernels (built here).
    expect(report.default_backend).toEqual({ float32: 'wasm', packed: 'native' });
  });

  test('a BF16 checkpoint runs on the native kernels by default and on tfjs with --backend tfjs', () => {
    const run = (extra: string[]) => JSON.parse(herd(['generate', '--model', TINY_LLAMA, '--raw', '--json', '-n', '4', '--temperature', '0', ...extra, 'The capital of France is']).stdout);
    const automatic = run([]);
    const tfjs = run(['--backend', 'tfjs']);
    expect([automatic.backend, tfjs.backend]).toEqual(['native', 'wasm']);
    expect(automatic.generated_ids).toEqual(tfjs.generated_ids);
  });

  test('bench reports its figures as JSON, the weight bytes each token reads included', () => {
    const report = JSON.parse(herd(['bench', '--prompt-tokens', '16', '--gen-tokens', '8', '--json']).stdout);
    expect(report).toEqual(expect.objectContaining({ prompt_tokens: 16, gen_tokens: 8, backend: 'wasm' }));
    expect(report.decode_tokens_per_second).toBeGreaterThan(0);
    // stories260K on tfjs, all float32: 5 layers of q and o (64 × 64), k and v (32 × 64), gate, up and
    // down (172 × 64) and two norms of 64; then the final norm and the tied head (512 × 64).
    const perLayer = 64 * 64 * 2 + 32 * 64 * 2 + 172 * 64 * 3 + 64 * 2;
    expect(report.weight_bytes_per_token).toBe((5 * perLayer + 64 + 512 * 64) * 4);
  });

  test('bench --synthetic builds a published shape with random weights in the asked format', () => {
    const report = JSON.parse(herd(['bench', '--synthetic', 'llama-3.2-1b', '--format', 'q4_0', '--prompt-tokens', '2', '--gen-tokens', '2', '--json']).stdout);
    // Chosen as for a model file: the native kernels compute on every type the weights have (Q4_0, F32 norms).
    expect(report.backend).toBe('native');
    // Llama 3.2 1B: 16 layers of hidden 2048, 8 kv heads of 64, MLP 8192, tied head of 128256 rows; Q4_0 = 18 bytes per 32 weights.
    const q4 = (rows: number, cols: number) => rows * (cols / 32) * 18;
    const perLayer = q4(2048, 2048) * 2 + q4(512, 2048) * 2 + q4(8192, 2048) * 2 + q4(2048, 8192) + 2048 * 4 * 2;
    expect(report.weight_bytes_per_token).toBe(16 * perLayer + 2048 * 4 + q4(128256, 2048));
  });
});
