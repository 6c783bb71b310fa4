import { HerdError } from '../src/errors.js';
import { chooseGguf, ggufTags, matchesGlob, selectFiles, type RepoFile } from '../src/hub/select-files.js';

const file = (path: string): RepoFile => ({ path, size: 1, gitSha1: '0'.repeat(40) });
const paths = (files: readonly RepoFile[]) => files.map((f) => f.path);

/** meta-llama/Llama-3.1-8B-Instruct's tree as the Hub lists it. */
const LLAMA_TREE = [
  '.gitattributes', 'LICENSE', 'README.md', 'USE_POLICY.md', 'config.json', 'generation_config.json',
  'model-00001-of-00004.safetensors', 'model-00002-of-00004.safetensors', 'model-00003-of-00004.safetensors', 'model-00004-of-00004.safetensors',
  'model.safetensors.index.json', 'original/consolidated.00.pth', 'original/params.json', 'original/tokenizer.model',
  'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json',
].map(file);

const LLAMA_WEIGHTS_AND_CONFIGS = [
  'config.json', 'generation_config.json',
  'model-00001-of-00004.safetensors', 'model-00002-of-00004.safetensors', 'model-00003-of-00004.safetensors', 'model-00004-of-00004.safetensors',
  'model.safetensors.index.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json',
];

/** A GGUF repository the way bartowski's are laid out: one file per quantization, big ones split in folders. */
const GGUF_TREE = [
  '.gitattributes', 'README.md', 'Meta-Llama-3.1-8B-Instruct.imatrix',
  'Meta-Llama-3.1-8B-Instruct-IQ4_XS.gguf', 'Meta-Llama-3.1-8B-Instruct-Q4_K.gguf', 'Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf',
  'Meta-Llama-3.1-8B-Instruct-Q4_K_S.gguf', 'Meta-Llama-3.1-8B-Instruct-Q8_0.gguf', 'Meta-Llama-3.1-8B-Instruct-f32.gguf',
  'Meta-Llama-3.1-8B-Instruct-UD-Q4_K_XL.gguf', 'mmproj-Meta-Llama-3.1-8B-Instruct-f16.gguf',
  'Meta-Llama-3.1-8B-Instruct-Q6_K/Meta-Llama-3.1-8B-Instruct-Q6_K-00002-of-00002.gguf',
  'Meta-Llama-3.1-8B-Instruct-Q6_K/Meta-Llama-3.1-8B-Instruct-Q6_K-00001-of-00002.gguf',
].map(file);

describe('safetensors repositories: the weights herd loads, with configs and tokenizer', () => {
  test('the index and its shards; never original/, *.pth, docs or .gitattributes', () => {
    expect(paths(selectFiles('meta-llama/Llama-3.1-8B-Instruct', LLAMA_TREE))).toEqual(LLAMA_WEIGHTS_AND_CONFIGS);
  });

  test('with the index text, exactly the shards its weight_map names', () => {
    const tree = [...LLAMA_TREE, file('model-00001-of-00002.safetensors')]; // a stale shard of an older upload
    const index = JSON.stringify({ metadata: {}, weight_map: { 'a.weight': 'model-00001-of-00004.safetensors', 'b.weight': 'model-00002-of-00004.safetensors', 'c.weight': 'model-00002-of-00004.safetensors', 'd.weight': 'model-00003-of-00004.safetensors', 'e.weight': 'model-00004-of-00004.safetensors' } });
    expect(paths(selectFiles('org/x', tree, { safetensorsIndex: index }))).toEqual(LLAMA_WEIGHTS_AND_CONFIGS);
    expect(() => selectFiles('org/x', tree, { safetensorsIndex: '{"metadata": {}}' })).toThrow('model.safetensors.index.json has no weight_map');
    expect(() => selectFiles('org/x', tree, { safetensorsIndex: '{' })).toThrow(/model.safetensors.index.json is not valid JSON/);
  });

  test('a single model.safetensors, with a chat template file and tokenizer.model; other weight formats stay', () => {
    const tree = ['config.json', 'model.safetensors', 'pytorch_model.bin', 'tf_model.h5', 'chat_template.jinja', 'tokenizer.model', 'onnx/model.onnx', 'consolidated.safetensors'].map(file);
    expect(paths(selectFiles('org/x', tree))).toEqual(['chat_template.jinja', 'config.json', 'model.safetensors', 'tokenizer.model']);
  });

  test('--include adds what the default leaves out; --exclude removes, last', () => {
    expect(paths(selectFiles('org/x', LLAMA_TREE, { include: ['original/'] }))).toEqual([...LLAMA_WEIGHTS_AND_CONFIGS.slice(0, 7), 'original/consolidated.00.pth', 'original/params.json', 'original/tokenizer.model', ...LLAMA_WEIGHTS_AND_CONFIGS.slice(7)]);
    expect(paths(selectFiles('org/x', LLAMA_TREE, { include: ['*.md'], exclude: ['*.safetensors', 'README*'] }))).toEqual(['USE_POLICY.md', 'config.json', 'generation_config.json', 'model.safetensors.index.json', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
  });

  test('a repository with nothing herd loads names what it has, unless --include picks files', () => {
    const tree = ['config.json', 'pytorch_model.bin', 'README.md'].map(file);
    expect(() => selectFiles('org/old', tree)).toThrow('org/old has neither model.safetensors(.index.json) nor .gguf files, so nothing herd can load (files: config.json, pytorch_model.bin, README.md)');
    expect(paths(selectFiles('org/old', tree, { include: ['*.bin'] }))).toEqual(['pytorch_model.bin']);
  });
});

describe('GGUF repositories: one quantization, all its parts', () => {
  const repo = 'bartowski/Meta-Llama-3.1-8B-Instruct-GGUF';

  test.each([
    ['Q4_K_M', ['Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf']],
    ['q4_k_m', ['Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf']],
    ['Q4_K', ['Meta-Llama-3.1-8B-Instruct-Q4_K.gguf']], // a whole word: not Q4_K_M or Q4_K_S
    ['IQ4_XS', ['Meta-Llama-3.1-8B-Instruct-IQ4_XS.gguf']],
    ['F32', ['Meta-Llama-3.1-8B-Instruct-f32.gguf']],
    ['UD-Q4_K_XL', ['Meta-Llama-3.1-8B-Instruct-UD-Q4_K_XL.gguf']],
    ['Q4_K_XL', ['Meta-Llama-3.1-8B-Instruct-UD-Q4_K_XL.gguf']],
    ['Q6_K', ['Meta-Llama-3.1-8B-Instruct-Q6_K/Meta-Llama-3.1-8B-Instruct-Q6_K-00001-of-00002.gguf', 'Meta-Llama-3.1-8B-Instruct-Q6_K/Meta-Llama-3.1-8B-Instruct-Q6_K-00002-of-00002.gguf']],
    ['Meta-Llama-3.1-8B-Instruct-Q8_0.gguf', ['Meta-Llama-3.1-8B-Instruct-Q8_0.gguf']],
    ['Meta-Llama-3.1-8B-Instruct-Q6_K/Meta-Llama-3.1-8B-Instruct-Q6_K.gguf', ['Meta-Llama-3.1-8B-Instruct-Q6_K/Meta-Llama-3.1-8B-Instruct-Q6_K-00001-of-00002.gguf', 'Meta-Llama-3.1-8B-Instruct-Q6_K/Meta-Llama-3.1-8B-Instruct-Q6_K-00002-of-00002.gguf']],
  ])(':%s takes exactly its file(s), the first part first', (quant, expected) => {
    expect(paths(selectFiles(repo, GGUF_TREE, { quant }))).toEqual(expected);
  });

  test('an unknown tag lists the tags there are', () => {
    expect(() => selectFiles(repo, GGUF_TREE, { quant: 'Q3_K_L' })).toThrow(`no GGUF file in ${repo} matches "Q3_K_L"; available tags: IQ4_XS, Q4_K, Q4_K_M, Q4_K_S, Q6_K, Q8_0, UD-Q4_K_XL, f32`);
  });

  test('a tag that matches several models lists them', () => {
    const tree = ['Llama-3.2-1B-Instruct-Q8_0.gguf', 'Llama-3.2-3B-Instruct-Q8_0.gguf', 'Llama-3.2-3B-Instruct-Q4_0.gguf'].map(file);
    let error: unknown;
    try {
      selectFiles('org/mixed', tree, { quant: 'Q8_0' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(HerdError);
    expect((error as Error).message).toBe('"Q8_0" matches several GGUF models in org/mixed: Llama-3.2-1B-Instruct-Q8_0.gguf, Llama-3.2-3B-Instruct-Q8_0.gguf; give the file name, as org/mixed:FILE');
  });

  test('without a tag: the only model there is, else Q4_K_M as llama.cpp picks, else a list to choose from', () => {
    expect(paths(selectFiles('org/one', ['README.md', 'tiny-F16.gguf'].map(file)))).toEqual(['tiny-F16.gguf']);
    expect(paths(selectFiles(repo, GGUF_TREE))).toEqual(['Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf']);
    expect(() => selectFiles('org/two', ['m-Q8_0.gguf', 'm-Q5_K_M.gguf'].map(file))).toThrow('org/two has several GGUF quantizations; name one as org/two:TAG, one of: Q5_K_M, Q8_0');
  });

  test('a tag asks for GGUF even beside safetensors; a repository without any says so', () => {
    expect(paths(selectFiles('org/both', ['config.json', 'model.safetensors', 'model-Q8_0.gguf'].map(file), { quant: 'Q8_0' }))).toEqual(['model-Q8_0.gguf']);
    expect(() => selectFiles('meta-llama/Llama-3.1-8B-Instruct', LLAMA_TREE, { quant: 'Q4_K_M' })).toThrow(/^meta-llama\/Llama-3.1-8B-Instruct has no \.gguf files for :Q4_K_M, so nothing herd can load/);
  });

  test('vision projectors come only when asked for', () => {
    expect(paths(selectFiles(repo, GGUF_TREE, { quant: 'Q8_0', include: ['mmproj-*'] }))).toEqual(['Meta-Llama-3.1-8B-Instruct-Q8_0.gguf', 'mmproj-Meta-Llama-3.1-8B-Instruct-f16.gguf']);
  });

  test('chooseGguf works on bare paths (a cached snapshot) and ggufTags on a lone model', () => {
    expect(chooseGguf('org/c', [{ path: 'model-Q4_K_M.gguf' }, { path: 'model-Q8_0.gguf' }], 'Q8_0')).toEqual([{ path: 'model-Q8_0.gguf' }]);
    expect(ggufTags([{ key: 'Llama-3.2-1B-Instruct-Q4_K_M.gguf' }])).toEqual(['Q4_K_M']);
    expect(ggufTags([{ key: 'model-Q4_K_M.gguf' }, { key: 'model-Q4_K_S.gguf' }])).toEqual(['Q4_K_M', 'Q4_K_S']);
  });
});

describe('fnmatch patterns, as huggingface_hub matches allow and ignore patterns', () => {
  test.each([
    ['*.safetensors', 'model-00001-of-00004.safetensors', true],
    ['*.json', 'original/params.json', true], // `*` crosses `/` in fnmatch
    ['original/*', 'original/params.json', true],
    ['original/', 'original/sub/params.json', true],
    ['original', 'original/params.json', false],
    ['model-0000?-of-00004.safetensors', 'model-00003-of-00004.safetensors', true],
    ['model-0000[12]-of-*', 'model-00003-of-00004.safetensors', false],
    ['model-0000[!12]-of-*', 'model-00003-of-00004.safetensors', true],
    ['[]x]', ']', true],
    ['[!]]', 'a', true],
    ['a[', 'a[', true],
    ['*.JSON', 'config.json', false], // case matters, as on POSIX
    ['config.json', 'config_json', false], // `.` is a dot, not "any character"
    ['(x)+', '(x)+', true],
  ])('%s against %s: %s', (pattern, filePath, expected) => {
    expect(matchesGlob(filePath, pattern)).toBe(expected);
  });
});
