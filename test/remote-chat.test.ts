import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { remoteChatOptions, type LocalTemplate, type RemoteTarget } from '../src/cli/endpoint.js';
import { Conversation } from '../src/chat/conversation.js';
import { ChatAgent, type ChatSourceOptions, type TurnHooks } from '../src/chat/loop.js';
import { ToolBox, loadToolsFile } from '../src/chat/tools.js';
import { readGenerationDefaults } from '../src/engine/load.js';
import { GREEDY } from '../src/engine/sampling.js';
import { probeEndpoint } from '../src/remote/capabilities.js';
import { EndpointClient } from '../src/remote/client.js';
import type { ChatMessage } from '../src/templates/chat-template.js';
import { EOM, EOT, LLAMA_STOP_IDS, PYTHON_TAG_ID, ScriptedTokenSource, llamaTokenizer, textIds } from './chat-scripted-source.js';
import { errorBody, modelList, sendEvents, sendJson, startFakeServer, type FakeServer } from './fake-openai-server.js';
import { LLAMA_TOKENIZER } from './fixtures.js';
import { HANG_GUARD_MS } from './hang-guard.js';

const DATE = new Date(2024, 6, 26);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-remote-chat-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const hooks: TurnHooks = { onEvent: () => undefined, approve: async () => true, shouldStop: () => false };

function toolBox(builtins: string[], toolsFile?: string): ToolBox {
  return new ToolBox(toolsFile ? loadToolsFile(toolsFile) : [], builtins, { timeoutMs: HANG_GUARD_MS, maxOutputBytes: 4096, env: {} });
}

async function runTurn(sourceOptions: ChatSourceOptions, tools: ToolBox, question: string): Promise<ChatMessage[]> {
  const conversation = new Conversation();
  const agent = new ChatAgent(conversation, { ...sourceOptions, tools, date: DATE, maxNewTokens: 256, maxToolRounds: 4 });
  const summary = await agent.send(question, hooks);
  expect(summary.finishReason).toBe('stop');
  return conversation.messages;
}

/** Call ids are random per run (herd's parser) or the server's: number them in order of appearance. */
function withNumberedCallIds(messages: ChatMessage[]): ChatMessage[] {
  const ids = new Map<string, string>();
  const number = (id: string) => ids.get(id) ?? (ids.set(id, `call_${ids.size}`), ids.get(id)!);
  return messages.map((message) => ({
    ...message,
    ...(message.tool_calls && { tool_calls: message.tool_calls.map((call) => ({ ...call, id: number(call.id) })) }),
    ...(message.tool_call_id !== undefined && { tool_call_id: number(message.tool_call_id) }),
  }));
}

/** --template-from the Llama 3.1 tokenizer folder (its tokenizer already loaded by the scripted source). */
const TEMPLATE: LocalTemplate = { dir: LLAMA_TOKENIZER, tokenizer: llamaTokenizer, generation: readGenerationDefaults(LLAMA_TOKENIZER, { eosTokenIds: [] }) };

async function connect(server: FakeServer, template: LocalTemplate | null): Promise<RemoteTarget> {
  const client = new EndpointClient({ url: `${server.url}/v1`, retryBaseMs: 1 });
  return { client, capabilities: await probeEndpoint(client), template };
}

describe('herd chat over an endpoint completes the same tool loop as the local engine', () => {
  test('raw mode: herd renders the template, the server continues the ids, a built-in call ends in <|eom_id|>', async () => {
    const call = 'print(6 * 7)';
    const answer = '6 times 7 is 42.';
    const local = new ScriptedTokenSource([[PYTHON_TAG_ID, ...textIds(call), EOM], [...textIds(answer), EOT]]);
    const localTranscript = await runTurn({ source: local, tokenizer: llamaTokenizer, stopTokenIds: LLAMA_STOP_IDS }, toolBox(['code_interpreter']), 'What is 6 times 7? Use code.');

    // The server streams what vLLM streams with skip_special_tokens false: <|python_tag|> as text, the end token named in stop_reason.
    const replies = [{ pieces: ['<|python_tag|>', 'print(6', ' * 7)'], stopReason: EOM }, { pieces: ['6 times', ' 7 is 42.'], stopReason: null }];
    const server = await startFakeServer((request, response) => {
      if (request.path === '/v1/models') return sendJson(response, 200, modelList('llama-3.1-8b-instruct'));
      if (request.path !== '/v1/completions') return sendJson(response, 404, errorBody('no such route'));
      if (request.body!.stream !== true) return sendJson(response, 200, { choices: [{ text: ' world', logprobs: null, finish_reason: 'length' }] });
      const reply = replies.shift()!;
      sendEvents(response, [
        ...reply.pieces.map((text) => ({ choices: [{ index: 0, text, finish_reason: null }] })),
        { choices: [{ index: 0, text: '', finish_reason: 'stop', stop_reason: reply.stopReason }] },
        { choices: [], usage: { prompt_tokens: 10, completion_tokens: 4 } },
      ]);
    });
    try {
      const target = await connect(server, TEMPLATE);
      const { mode, options } = remoteChatOptions(target, GREEDY);
      expect(mode).toBe('raw');
      const remoteTranscript = await runTurn(options, toolBox(['code_interpreter']), 'What is 6 times 7? Use code.');

      expect(withNumberedCallIds(remoteTranscript)).toEqual(withNumberedCallIds(localTranscript));
      expect(remoteTranscript[2]).toEqual(expect.objectContaining({ role: 'ipython', content: '42' }));
      // The server was sent exactly the token ids the local engine ran, the ipython result rendered by herd.
      const streamed = server.to('/v1/completions').filter((request) => request.body!.stream === true);
      expect(streamed.map((request) => request.body!.prompt)).toEqual(local.prompts);
      expect(streamed[0]!.body).toEqual(expect.objectContaining({ model: 'llama-3.1-8b-instruct', temperature: 0, skip_special_tokens: false, stop_token_ids: LLAMA_STOP_IDS }));
    } finally {
      await server.close();
    }
  });

  test('chat mode: the server renders and parses, its tool_calls run a custom JSON tool in herd\'s loop', async () => {
    const tools = path.join(work, 'tools.json');
    const script = path.join(work, 'weather.mjs');
    fs.writeFileSync(script, 'let input = ""; process.stdin.on("data", (c) => (input += c)); process.stdin.on("end", () => process.stdout.write(`Sunny in ${JSON.parse(input).city}`));');
    const schema = { type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };
    fs.writeFileSync(tools, JSON.stringify([{ ...schema, command: [process.execPath, script] }]));
    const answer = 'It is sunny in Paris.';
    const local = new ScriptedTokenSource([[...textIds('{"name": "get_weather", "parameters": {"city": "Paris"}}'), EOT], [...textIds(answer), EOT]]);
    const localTranscript = await runTurn({ source: local, tokenizer: llamaTokenizer, stopTokenIds: LLAMA_STOP_IDS }, toolBox([], tools), 'Weather in Paris?');

    let turn = 0;
    const server = await startFakeServer((request, response) => {
      if (request.path === '/v1/models') return sendJson(response, 200, modelList('llama'));
      if (request.path !== '/v1/chat/completions') return sendJson(response, 404, errorBody('no such route'));
      if (request.body!.stream !== true) return sendJson(response, 200, { choices: [{ message: { role: 'assistant', content: 'Hi' }, finish_reason: 'length' }] });
      // vLLM's streaming shape: the first delta of a call names it, the arguments follow in pieces.
      const events = turn++ === 0
        ? [
          { choices: [{ index: 0, delta: { role: 'assistant', tool_calls: [{ index: 0, id: 'chatcmpl-tool-1', type: 'function', function: { name: 'get_weather' } }] }, finish_reason: null }] },
          { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }, finish_reason: null }] },
          { choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }, finish_reason: 'tool_calls' }] },
        ]
        : [
          { choices: [{ index: 0, delta: { role: 'assistant', content: 'It is sunny' }, finish_reason: null }] },
          { choices: [{ index: 0, delta: { content: ' in Paris.' }, finish_reason: 'stop' }] },
        ];
      sendEvents(response, [...events, { choices: [], usage: { prompt_tokens: 50, completion_tokens: 7 } }]);
    });
    try {
      const target = await connect(server, null);
      expect(target.capabilities).toEqual(expect.objectContaining({ completions: false, chat: true, promptLogprobs: false }));
      const { mode, options } = remoteChatOptions(target, GREEDY);
      expect(mode).toBe('chat');
      const remoteTranscript = await runTurn(options, toolBox([], tools), 'Weather in Paris?');

      expect(withNumberedCallIds(remoteTranscript)).toEqual(withNumberedCallIds(localTranscript));
      expect(remoteTranscript[2]).toEqual({ role: 'ipython', content: 'Sunny in Paris', tool_call_id: 'chatcmpl-tool-1' });
      // The second request carries the call and its result in OpenAI's shape, and the tool's schema without herd's command.
      const second = server.to('/v1/chat/completions').filter((request) => request.body!.stream === true)[1]!.body!;
      expect(second.tools).toEqual([schema]);
      expect(second.messages).toEqual([
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'chatcmpl-tool-1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
        { role: 'tool', content: 'Sunny in Paris', tool_call_id: 'chatcmpl-tool-1' },
      ]);
    } finally {
      await server.close();
    }
  });

  test('chat mode refuses built-in tools, which only raw mode can render', async () => {
    const server = await startFakeServer((request, response) => {
      if (request.path === '/v1/models') return sendJson(response, 200, modelList('llama'));
      if (request.path === '/v1/chat/completions') return sendJson(response, 200, { choices: [{ message: { role: 'assistant', content: 'Hi' } }] });
      return sendJson(response, 404, errorBody('no such route'));
    });
    try {
      const { options } = remoteChatOptions(await connect(server, TEMPLATE), GREEDY);
      await expect(runTurn(options, toolBox(['code_interpreter']), 'hi')).rejects.toThrow(/built-in tools need raw mode .*--template-from/);
    } finally {
      await server.close();
    }
  });
});
