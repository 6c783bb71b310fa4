/**
 * herd as the client of a real server: `herd serve` on the tiny Llama 3.1 fixture, 127.0.0.1.
 * The same tasks and the same chat turn, run on the local engine and over --endpoint, agree.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readTemplate, remoteChatOptions } from '../src/cli/endpoint.js';
import { Conversation } from '../src/chat/conversation.js';
import { ChatAgent, type ChatSourceOptions } from '../src/chat/loop.js';
import { EngineTokenSource } from '../src/chat/token-source.js';
import { ToolBox } from '../src/chat/tools.js';
import { loadModel } from '../src/backends/load.js';
import type { LoadedModel } from '../src/engine/load.js';
import { GREEDY } from '../src/engine/sampling.js';
import { runTask, type RunOptions, type TaskRun } from '../src/eval/runner.js';
import { resolveTask } from '../src/eval/task-config.js';
import { probeEndpoint } from '../src/remote/capabilities.js';
import { EndpointClient } from '../src/remote/client.js';
import { RemoteEvalModel } from '../src/remote/eval-model.js';
import { DATA, TINY_LLAMA } from './fixtures.js';
import { BIN } from './herd-cli.js';
import { HANG_GUARD_MS } from './hang-guard.js';

let serve: ChildProcess;
let url: string;
let tiny: LoadedModel;

/** Starts `herd serve --port 0 --json` and reads the URL from its ready line. */
function startServe(): Promise<string> {
  const { NODE_ENV: _test, ...env } = process.env;
  serve = spawn(process.execPath, [BIN, 'serve', '--model', TINY_LLAMA, '--port', '0', '--parallel', '2', '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  serve.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    let out = '';
    serve.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const ready = out.split('\n').map((line) => { try { return JSON.parse(line) as { event?: string; url?: string }; } catch { return null; } }).find((line) => line?.event === 'ready');
      if (ready?.url) resolve(ready.url);
    });
    serve.on('close', (code) => reject(new Error(`herd serve exited (${code}) before it was ready: ${stderr}`)));
  });
}

beforeAll(async () => {
  [url, tiny] = await Promise.all([startServe(), loadModel(TINY_LLAMA)]);
}, HANG_GUARD_MS);
afterAll(() => {
  serve?.kill('SIGTERM');
});

async function remoteModel(concurrency: number): Promise<RemoteEvalModel> {
  const client = new EndpointClient({ url, concurrency });
  const capabilities = await probeEndpoint(client);
  expect(capabilities).toEqual(expect.objectContaining({ completions: true, promptLogprobs: true, tokenIdPrompts: true, chat: true }));
  return new RemoteEvalModel(client, capabilities, tiny.tokenizer, concurrency);
}

const options: RunOptions = { dataDir: DATA, limit: 2, numFewshot: 0, fewshotSeed: 1234, applyChatTemplate: false, fewshotAsMultiturn: false, maxLength: 4096, maxGenToks: 6 };

function expectSameRun(remote: TaskRun, local: TaskRun): void {
  expect(remote.samples).toHaveLength(local.samples.length);
  remote.samples.forEach((sample, i) => {
    const reference = local.samples[i]!;
    expect(sample.arguments).toEqual(reference.arguments);
    const [got, want] = [sample.output as Record<string, unknown>, reference.output as Record<string, unknown>];
    if (Array.isArray(want.loglikelihoods)) {
      (want.loglikelihoods as number[]).forEach((value, k) => expect((got.loglikelihoods as number[])[k]).toBeCloseTo(value, 4));
      expect(got.is_greedy).toEqual(want.is_greedy);
    } else {
      expect(got).toEqual(want);
    }
    for (const [key, value] of Object.entries(reference.metrics)) expect(sample.metrics[key]).toBeCloseTo(value as number, 4);
  });
}

describe('against herd serve: the same numbers as the local engine', () => {
  test('a multiple-choice (loglikelihood) task and a generate_until task give the local per-sample results', async () => {
    const remote = await remoteModel(3);
    for (const task of ['arc_challenge', 'triviaqa']) {
      const local = await runTask(tiny, resolveTask(task), options);
      expectSameRun(await runTask(remote, resolveTask(task), options), local);
    }
  });

  /** One greedy turn (today's date, as the server's template writes it); its messages and token counts. */
  async function turn(source: ChatSourceOptions) {
    const conversation = new Conversation([{ role: 'system', content: 'Be brief.' }]);
    const tools = new ToolBox([], [], { timeoutMs: HANG_GUARD_MS, maxOutputBytes: 4096, env: {} });
    const agent = new ChatAgent(conversation, { ...source, tools, maxNewTokens: 12, maxToolRounds: 2 });
    const summary = await agent.send('Hello there', { onEvent: () => undefined, approve: async () => false, shouldStop: () => false });
    return { messages: conversation.messages, prompt: summary.promptTokens };
  }

  test('chat in both modes: the turn the local engine generates, greedy, token for token', async () => {
    const local = await turn({ source: new EngineTokenSource(tiny, GREEDY), tokenizer: tiny.tokenizer, stopTokenIds: tiny.generation.eosTokenIds });
    const client = new EndpointClient({ url });
    const capabilities = await probeEndpoint(client);
    const raw = remoteChatOptions({ client, capabilities, template: readTemplate(TINY_LLAMA) }, GREEDY);
    expect(raw.mode).toBe('raw');
    expect(await turn(raw.options)).toEqual(local);
    // Without a local template: the server renders the same template and parses the reply itself.
    const chat = remoteChatOptions({ client, capabilities, template: null }, GREEDY);
    expect(chat.mode).toBe('chat');
    expect(await turn(chat.options)).toEqual(local);
  });
});
