/**
 * A Llama 3.1 Instruct model as GGUF written by herd chats exactly as its Hugging Face folder does:
 * the same prompt ids (tokenizer, chat template and BOS from the GGUF metadata) and the same stops
 * (llama.cpp's end-of-generation set against generation_config.json's eos list).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Conversation } from '../src/chat/conversation.js';
import { ChatAgent, type TurnSummary } from '../src/chat/loop.js';
import { ToolBox } from '../src/chat/tools.js';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { HerdTokenizer } from '../src/engine/tokenizer.js';
import { GgmlType, readGgufHeader } from '../src/formats/gguf.js';
import { endOfGenerationIds, tokenizerFromGguf, tokenizerMetadata } from '../src/formats/gguf-tokenizer.js';
import { DEFAULT_CALIBRATION_FILE } from '../src/quant/calibration.js';
import { runQuantizeJob } from '../src/quant/job.js';
import { END_OF_TEXT, EOM, EOT, PYTHON_TAG_ID, ScriptedTokenSource, textIds } from './chat-scripted-source.js';
import { STORIES, TINY_LLAMA, readJson } from './fixtures.js';
import { HANG_GUARD_MS } from './hang-guard.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-gguf-chat-'));
const generationConfig = readJson<{ eos_token_id: number[] }>(path.join(TINY_LLAMA, 'generation_config.json'));
const tokenizerConfig = readJson<{ chat_template: string }>(path.join(TINY_LLAMA, 'tokenizer_config.json'));
let ggufPath: string;
let loaded: LoadedModel;

beforeAll(async () => {
  const [result] = await runQuantizeJob({
    modelDir: TINY_LLAMA, outDir: work, formats: ['gguf-q8_0'], groupSize: 64,
    calibration: { file: DEFAULT_CALIBRATION_FILE, samples: 1, seqLen: 32 }, gptq: { symmetric: true, actOrder: false, dampPercent: 0.01 }, nf4DoubleQuant: false,
  });
  ggufPath = result!.path;
  loaded = await loadModel(ggufPath, { backend: 'kernels', threads: 1 });
});

afterAll(() => {
  loaded?.model.dispose();
  fs.rmSync(work, { recursive: true, force: true });
});

test('herd writes the tokenizer, chat template and special ids as convert_hf_to_gguf.py does for Llama 3.1', () => {
  const { metadata, tensors } = readGgufHeader(ggufPath);
  expect(tensors.get('blk.0.attn_q.weight')!.type).toBe(GgmlType.Q8_0);
  expect(metadata.get('tokenizer.ggml.model')).toBe('gpt2');
  expect(metadata.get('tokenizer.ggml.pre')).toBe('llama-bpe');
  expect((metadata.get('tokenizer.ggml.tokens') as string[]).length).toBe(128256);
  // Special tokens are control tokens (llama_token_type 3), so llama.cpp parses them as specials.
  const types = metadata.get('tokenizer.ggml.token_type') as number[];
  expect([END_OF_TEXT, EOM, EOT, PYTHON_TAG_ID].map((id) => types[id])).toEqual([3, 3, 3, 3]);
  expect(types[9906]).toBe(1);
  // convert_hf_to_gguf.py takes bos/eos from tokenizer_config.json (eos <|eot_id|>) and writes no eot/eom keys.
  expect(metadata.get('tokenizer.ggml.bos_token_id')).toBe(128000);
  expect(metadata.get('tokenizer.ggml.eos_token_id')).toBe(EOT);
  expect(metadata.get('tokenizer.ggml.add_bos_token')).toBe(true);
  expect(metadata.get('tokenizer.chat_template')).toBe(tokenizerConfig.chat_template);
});

test('loaded back, the stop ids are generation_config.json\'s eos list and BOS is added as the folder adds it', () => {
  expect(generationConfig.eos_token_id).toEqual([END_OF_TEXT, EOM, EOT]);
  expect(loaded.generation.eosTokenIds).toEqual(generationConfig.eos_token_id);
  expect(loaded.config.eosTokenIds).toEqual(generationConfig.eos_token_id);
  expect(loaded.tokenizer.encode('Hello', true)).toEqual([128000, 9906]);
  expect(loaded.tokenizer.settings.chatTemplate).toBe(tokenizerConfig.chat_template);
});

describe('chat with scripted Llama 3.1 ids: the GGUF file and the Hugging Face folder', () => {
  /** What the model "writes": each reply runs on past its stop token, so a missed stop shows. */
  const script = () => [
    [PYTHON_TAG_ID, ...textIds('brave_search.call(query="weather in Paris")'), EOM, ...textIds(' and more')],
    [...textIds('It is sunny in Paris.'), EOT, ...textIds(' and more')],
    [...textIds('You are welcome.'), EOT, END_OF_TEXT],
  ];

  async function chat(tokenizer: HerdTokenizer, stopTokenIds: number[]) {
    const source = new ScriptedTokenSource(script());
    const tools = new ToolBox([], ['brave_search'], { timeoutMs: HANG_GUARD_MS, maxOutputBytes: 4096, env: {} });
    const conversation = new Conversation([]);
    const agent = new ChatAgent(conversation, { source, tokenizer, tools, date: new Date(2024, 6, 26), stopTokenIds, maxNewTokens: 256, maxToolRounds: 4 });
    const hooks = { onEvent: () => {}, approve: async () => true, shouldStop: () => false };
    const summaries: TurnSummary[] = [await agent.send('Weather in Paris?', hooks), await agent.send('Thanks!', hooks)];
    return { summaries, messages: conversation.messages, prompts: source.prompts };
  }

  /** Tool call ids are random per run. */
  const withoutCallIds = (messages: unknown[]) => JSON.parse(JSON.stringify(messages).replace(/"call_[0-9a-f-]+"/g, '"call"'));

  test('stops at <|eom_id|> after the built-in call and at <|eot_id|> otherwise, with the same prompts', async () => {
    const fromFolder = await chat(HerdTokenizer.fromDir(TINY_LLAMA), generationConfig.eos_token_id);
    const fromGguf = await chat(loaded.tokenizer, loaded.generation.eosTokenIds);

    expect(fromGguf.summaries.map((s) => [s.finishReason, s.toolCalls])).toEqual([['stop', 1], ['stop', 0]]);
    expect(fromGguf.messages[1]!.tool_calls![0]!.function).toEqual({ name: 'brave_search', arguments: '{"query":"weather in Paris"}' });
    expect(fromGguf.messages.map((m) => m.content).filter((content) => typeof content === 'string' && content.includes('and more'))).toEqual([]);
    expect(fromGguf.messages.at(-1)!.content).toBe('You are welcome.');
    // The prompt after the tool call ends with the ipython result and a new assistant header.
    expect(fromGguf.prompts).toHaveLength(3);
    expect(fromGguf.prompts[0]![0]).toBe(128000);
    expect(fromGguf.prompts).toEqual(fromFolder.prompts);
    expect(withoutCallIds(fromGguf.messages)).toEqual(withoutCallIds(fromFolder.messages));
    expect(fromGguf.summaries).toEqual(fromFolder.summaries);
  });
});

describe('a SentencePiece-style (tokenizer.ggml.model "llama") vocabulary in GGUF: stories260K', () => {
  const stories = readJson<{ generated_ids: number[]; generated_text: string }>(path.join(STORIES, 'reference.json'));
  const metadata = new Map([...tokenizerMetadata(STORIES, 1, [2])].map(([key, entry]) => [key, entry.value]));
  const { tokenizerJson, tokenizerConfig } = tokenizerFromGguf(metadata, 'stories260K.gguf');
  const fromGguf = HerdTokenizer.fromJson(tokenizerJson, tokenizerConfig);
  const fromFolder = HerdTokenizer.fromDir(STORIES);

  test('scores and <0xNN> byte tokens are written; the stop ids are </s> alone', () => {
    expect(metadata.get('tokenizer.ggml.model')).toBe('llama');
    expect((metadata.get('tokenizer.ggml.tokens') as string[]).slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
    expect((metadata.get('tokenizer.ggml.token_type') as number[]).slice(0, 4)).toEqual([2, 3, 3, 6]);
    expect(endOfGenerationIds(metadata)).toEqual([2]);
  });

  test('encodes (BOS added, byte fallback) and decodes as the folder\'s tokenizer.json', () => {
    expect(fromGguf.decode(stories.generated_ids)).toBe(stories.generated_text);
    for (const text of [stories.generated_text, 'Lily saw a 🐶 and said "héllo"!', '  two  spaces\nand a line', '']) {
      expect(fromGguf.encode(text, true)).toEqual(fromFolder.encode(text, true));
    }
    expect(fromGguf.encode('Once', true)[0]).toBe(1);
  });
});
