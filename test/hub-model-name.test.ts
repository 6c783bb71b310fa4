import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HerdError } from '../src/errors.js';
import { HerdUsageError } from '../src/errors.js';
import { formatHubName, parseHubName, parseHubNameWithRevision, parseModelArgument } from '../src/hub/model-name.js';
import { STORIES } from './fixtures.js';

describe('parseModelArgument: a path that exists is local, anything else must be a Hub id', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-model-name-'));
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  test('existing folders and files are local, even when they look like org/name', () => {
    expect(parseModelArgument(STORIES)).toEqual({ kind: 'local', path: STORIES });
    fs.mkdirSync(path.join(work, 'meta-llama', 'Llama-3.1-8B'), { recursive: true });
    const relative = path.relative(process.cwd(), path.join(work, 'meta-llama', 'Llama-3.1-8B'));
    expect(parseModelArgument(relative)).toEqual({ kind: 'local', path: relative });
    const file = path.join(work, 'model.gguf');
    fs.writeFileSync(file, 'GGUF');
    expect(parseModelArgument(file)).toEqual({ kind: 'local', path: file });
  });

  test.each([
    ['meta-llama/Llama-3.1-8B-Instruct', { repo: 'meta-llama/Llama-3.1-8B-Instruct' }],
    ['org/name@main', { repo: 'org/name', revision: 'main' }],
    ['org/name@v1.0', { repo: 'org/name', revision: 'v1.0' }],
    ['org/name@0123456789abcdef0123456789abcdef01234567', { repo: 'org/name', revision: '0123456789abcdef0123456789abcdef01234567' }],
    ['org/name@refs/pr/1', { repo: 'org/name', revision: 'refs/pr/1' }],
    ['bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M', { repo: 'bartowski/Meta-Llama-3.1-8B-Instruct-GGUF', quant: 'Q4_K_M' }],
    ['org/name-GGUF@main:q8_0', { repo: 'org/name-GGUF', revision: 'main', quant: 'q8_0' }],
    ['org/name-GGUF:Q8_0/model-Q8_0-00001-of-00002.gguf', { repo: 'org/name-GGUF', quant: 'Q8_0/model-Q8_0-00001-of-00002.gguf' }],
    ['user_1/my.model_v2', { repo: 'user_1/my.model_v2' }],
  ])('%s is a Hub id', (arg, name) => {
    expect(parseModelArgument(arg)).toEqual({ kind: 'hub', name });
    expect(formatHubName(parseHubName(arg))).toBe(arg);
  });

  test.each([
    ['gpt2', /"gpt2" is neither an existing folder or file nor a Hugging Face id/],
    ['llama-9', /neither an existing folder or file nor a Hugging Face id \(org\/name/],
    ['org/na--me', /neither/], // `--` would make the cache folder models--org--na--me ambiguous
    ['org/na..me', /neither/],
    ['-org/name', /neither/],
    ['org/name.', /neither/],
    ['org/name.git', /neither/],
    ['org/name@', /neither/],
    ['org/name@../../x', /"\.\.\/\.\.\/x" in org\/name@\.\.\/\.\.\/x is not a valid revision/],
    ['org/name@main/', /is not a valid revision/],
    ['org/name:../up', /"\.\.\/up" in org\/name:\.\.\/up is not a quantization tag or a file name/],
    [`org/${'x'.repeat(97)}`, /neither/],
  ])('%s is refused in one line', (arg, message) => {
    expect(() => parseModelArgument(arg)).toThrow(HerdError);
    expect(() => parseModelArgument(arg)).toThrow(message);
  });

  test.each(['./missing-model', '../missing/model', '/no/such/folder', '~/no-such-model', 'some/nested/folder', 'model.gguf', 'org/model.gguf', 'config.json'])('%s does not exist and is a path: a missing-model error naming it', (arg) => {
    let error: HerdError | undefined;
    try {
      parseModelArgument(arg);
    } catch (caught) {
      error = caught as HerdError;
    }
    expect(error).toBeInstanceOf(HerdError);
    expect(error!.message).toBe(`model ${/\.(gguf|json)$/.test(arg) ? 'file' : 'folder'} ${arg} does not exist`);
    expect(error!.kind).toBe('model');
    expect(error!.file).toBe(arg);
  });
});

describe('a MODEL argument with --revision (herd pull, herd rm)', () => {
  test('the revision from either place; the same one twice is fine', () => {
    expect(parseHubNameWithRevision('org/name', undefined)).toEqual({ repo: 'org/name' });
    expect(parseHubNameWithRevision('org/name', 'v1')).toEqual({ repo: 'org/name', revision: 'v1' });
    expect(parseHubNameWithRevision('org/name@v1:Q8_0', 'v1')).toEqual({ repo: 'org/name', revision: 'v1', quant: 'Q8_0' });
  });

  test('two different revisions, or one that would leave refs/, are usage errors', () => {
    expect(() => parseHubNameWithRevision('org/name@main', 'v1')).toThrow(new HerdUsageError('org/name@main names revision main but --revision says v1; give one'));
    expect(() => parseHubNameWithRevision('org/name', '../x')).toThrow(HerdUsageError);
  });
});
