import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Conversation } from '../src/chat/conversation.js';
import { ChatAgent, type ChatEvent, type TurnHooks } from '../src/chat/loop.js';
import { ToolBox, loadToolsFile, type ToolSettings } from '../src/chat/tools.js';
import type { ToolCall } from '../src/templates/chat-template.js';
import { EOM, EOT, LLAMA_STOP_IDS, PYTHON_TAG_ID, ScriptedTokenSource, llamaTokenizer, textIds } from './chat-scripted-source.js';
import { LLAMA_CHAT, readJson } from './fixtures.js';
import { HANG_GUARD_MS } from './hang-guard.js';

const CHAT_FIXTURES = LLAMA_CHAT;
const weatherTool = readJson<{ weather_tool: { function: { name: string } } }>(path.join(CHAT_FIXTURES, 'cases.json')).weather_tool;
/** The date the fixtures' template renders by default. */
const FIXTURE_DATE = new Date(2024, 6, 26);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-chat-loop-'));

afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function toolsFile(name: string, tools: unknown[]): string {
  const file = path.join(work, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify(tools));
  return file;
}

/** A tool program (run by node, no shell) with its source in the work folder. */
function nodeTool(name: string, source: string): string[] {
  const script = path.join(work, `${name}.mjs`);
  fs.writeFileSync(script, source);
  return [process.execPath, script];
}

function agentWith(replies: number[][], options: { tools?: string; builtins?: string[]; settings?: Partial<ToolSettings>; system?: string } = {}) {
  const source = new ScriptedTokenSource(replies);
  const custom = options.tools ? loadToolsFile(options.tools) : [];
  const tools = new ToolBox(custom, options.builtins ?? [], { timeoutMs: HANG_GUARD_MS, maxOutputBytes: 4096, env: {}, ...options.settings });
  const conversation = new Conversation(options.system ? [{ role: 'system', content: options.system }] : []);
  const agent = new ChatAgent(conversation, { source, tokenizer: llamaTokenizer, tools, date: FIXTURE_DATE, stopTokenIds: LLAMA_STOP_IDS, maxNewTokens: 256, maxToolRounds: 4 });
  return { agent, source, conversation };
}

function recordingHooks(approve: (call: ToolCall) => boolean = () => true): TurnHooks & { events: ChatEvent[] } {
  const events: ChatEvent[] = [];
  return { events, onEvent: (event) => events.push(event), approve: async (call) => approve(call), shouldStop: () => false };
}

const states = (events: ChatEvent[]) => events.flatMap((event) => (event.type === 'tool_state' ? [event.state] : []));
const decode = (ids: number[]) => llamaTokenizer.decode(ids);

describe('the tool loop, driven by the ids a Llama 3.1 model emits', () => {
  test('a built-in call ended by <|eom_id|> runs code_interpreter and the same turn continues', async () => {
    const { agent, source, conversation } = agentWith([
      [PYTHON_TAG_ID, ...textIds('print(6 * 7)'), EOM],
      [...textIds('6 times 7 is 42.'), EOT],
    ], { builtins: ['code_interpreter'] });
    const hooks = recordingHooks();
    const summary = await agent.send('What is 6 times 7? Use code.', hooks);

    expect(summary.finishReason).toBe('stop');
    expect(summary.toolCalls).toBe(1);
    const [user, call, result, answer] = conversation.messages;
    expect(user).toEqual({ role: 'user', content: 'What is 6 times 7? Use code.' });
    expect(call!.tool_calls![0]!.function).toEqual({ name: 'code_interpreter', arguments: JSON.stringify({ code: 'print(6 * 7)' }) });
    expect(result).toEqual({ role: 'ipython', content: '42', tool_call_id: call!.tool_calls![0]!.id });
    expect(answer).toEqual({ role: 'assistant', content: '6 times 7 is 42.' });
    expect(states(hooks.events)).toEqual(['awaiting_approval', 'running', 'done']);
    // The second prompt is the first plus the call and its result: nothing earlier changed.
    const [first, second] = source.prompts;
    expect(second!.slice(0, first!.length)).toEqual(first);
    expect(decode(second!.slice(first!.length))).toBe(
      '<|python_tag|>code_interpreter.call(code="print(6 * 7)")<|eom_id|>'
      + '<|start_header_id|>ipython<|end_header_id|>\n\n"42"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    // Tokens streamed as they came; the final turn_end carries the counts.
    const streamed = hooks.events.flatMap((event) => (event.type === 'token' ? [event.text] : [])).join('');
    expect(streamed).toBe('<|python_tag|>print(6 * 7)6 times 7 is 42.');
    const generated = 1 + textIds('print(6 * 7)').length + 1 + textIds('6 times 7 is 42.').length + 1;
    expect(hooks.events.at(-1)).toEqual(expect.objectContaining({ type: 'turn_end', finishReason: 'stop', toolCalls: 1, generatedTokens: generated }));
  });

  test('brave_search without BRAVE_API_KEY gives the model a clear "not configured" result', async () => {
    const { agent, conversation } = agentWith([
      [PYTHON_TAG_ID, ...textIds('brave_search.call(query="gold price")'), EOM],
      [...textIds('I cannot search.'), EOT],
    ], { builtins: ['brave_search', 'wolfram_alpha'] });
    await agent.send('Price of gold?', recordingHooks());
    expect(conversation.messages[1]!.tool_calls![0]!.function).toEqual({ name: 'brave_search', arguments: '{"query":"gold price"}' });
    expect(conversation.messages[2]!.content).toBe('error: brave_search is not configured: set BRAVE_API_KEY to enable it');
  });

  test('a custom JSON call runs its command with the arguments on stdin; the next prompt is the fixture\'s tool-result prompt', async () => {
    const command = nodeTool('weather', `
      let input = '';
      process.stdin.on('data', (chunk) => { input += chunk; });
      process.stdin.on('end', () => {
        const args = JSON.parse(input);
        if (args.location !== 'San Francisco, CA' || args.unit !== 'Fahrenheit') process.exit(3);
        process.stdout.write('{"temperature": 61, "conditions": "foggy"}\\n');
      });`);
    const file = toolsFile('weather', [{ ...weatherTool, command }]);
    const { agent, source, conversation } = agentWith([
      [...textIds('{"name": "get_current_conditions", "parameters": {"location": "San Francisco, CA", "unit": "Fahrenheit"}}'), EOT],
      [...textIds('It is 61°F and foggy in San Francisco.'), EOT],
    ], { tools: file, system: 'You are a helpful assistant.' });
    const hooks = recordingHooks();
    await agent.send('What is the weather in San Francisco, CA in Fahrenheit?', hooks);

    expect(conversation.messages[3]).toEqual(expect.objectContaining({ role: 'ipython', content: '{"temperature": 61, "conditions": "foggy"}' }));
    expect(states(hooks.events)).toEqual(['awaiting_approval', 'running', 'done']);
    // Python jinja2 rendered exactly this conversation (fixture d_tool_result_ipython): the call
    // and result go back to the model as it was trained to read them.
    const expected = fs.readFileSync(path.join(CHAT_FIXTURES, 'expected/d_tool_result_ipython.txt'), 'utf8');
    expect(decode(source.prompts[1]!)).toBe(expected);
    expect(source.prompts[1]).toEqual(llamaTokenizer.encode(expected, false));
    expect(conversation.messages.at(-1)).toEqual({ role: 'assistant', content: 'It is 61°F and foggy in San Francisco.' });
  });

  test('two calls in one message both run, and are given back to the template one call at a time', async () => {
    const echo = nodeTool('echo', `process.stdin.pipe(process.stdout);`);
    const file = toolsFile('two', ['first', 'second'].map((name) => ({ type: 'function', function: { name, parameters: { type: 'object' } }, command: echo })));
    const { agent, source, conversation } = agentWith([
      [...textIds('{"name": "first", "parameters": {"n": 1}}; {"name": "second", "parameters": {"n": 2}}'), EOT],
      [...textIds('Both done.'), EOT],
    ], { tools: file });
    const hooks = recordingHooks();
    await agent.send('Call both.', hooks);

    const calls = conversation.messages[1]!.tool_calls!;
    expect(calls.map((call) => call.function.name)).toEqual(['first', 'second']);
    expect(conversation.messages.slice(2, 4)).toEqual([
      { role: 'ipython', content: '{"n":1}', tool_call_id: calls[0]!.id },
      { role: 'ipython', content: '{"n":2}', tool_call_id: calls[1]!.id },
    ]);
    const continuation = decode(source.prompts[1]!.slice(source.prompts[0]!.length));
    expect(continuation).toBe(
      '{"name": "first", "parameters": {"n": 1}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n"{\\"n\\":1}"<|eot_id|>'
      + '<|start_header_id|>assistant<|end_header_id|>\n\n{"name": "second", "parameters": {"n": 2}}<|eot_id|>'
      + '<|start_header_id|>ipython<|end_header_id|>\n\n"{\\"n\\":2}"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    expect(states(hooks.events)).toEqual(['awaiting_approval', 'running', 'done', 'awaiting_approval', 'running', 'done']);
  });

  test('a tool that runs past its timeout is killed and the model is told', async () => {
    // The tool would sleep 10 minutes; being killed it returns long before, even on a loaded machine.
    const file = toolsFile('slow', [{ type: 'function', function: { name: 'slow' }, command: [process.execPath, '-e', 'setTimeout(() => {}, 600000)'] }]);
    const { agent, conversation } = agentWith([
      [...textIds('{"name": "slow", "parameters": {}}'), EOT],
      [...textIds('The tool was too slow.'), EOT],
    ], { tools: file, settings: { timeoutMs: 300 } }); // timeout under test
    const hooks = recordingHooks();
    const started = Date.now();
    await agent.send('Go.', hooks);
    expect(Date.now() - started).toBeLessThan(60_000);
    expect(conversation.messages[2]!.content).toBe('error: slow timed out after 0.3 s');
    expect(states(hooks.events)).toEqual(['awaiting_approval', 'running', 'error']);
    expect(conversation.messages.at(-1)!.content).toBe('The tool was too slow.');
  });

  test('a refused approval runs nothing and tells the model', async () => {
    const marker = path.join(work, 'ran');
    const file = toolsFile('touch', [{ type: 'function', function: { name: 'touch' }, command: [process.execPath, '-e', `require('fs').writeFileSync(${JSON.stringify(marker)}, '')`] }]);
    const { agent, conversation } = agentWith([
      [...textIds('<function=touch>{}</function>'), EOT],
      [...textIds('Understood.'), EOT],
    ], { tools: file });
    const hooks = recordingHooks(() => false);
    await agent.send('Touch it.', hooks);
    expect(fs.existsSync(marker)).toBe(false);
    expect(conversation.messages[2]!.content).toBe('error: the user declined to run touch');
    expect(states(hooks.events)).toEqual(['awaiting_approval', 'refused']);
  });

  test('output past the cap is cut and the program stopped', async () => {
    const file = toolsFile('loud', [{ type: 'function', function: { name: 'loud' }, command: [process.execPath, '-e', 'for (;;) process.stdout.write("x".repeat(1000))'] }]);
    const { agent, conversation } = agentWith([[...textIds('{"name": "loud", "parameters": {}}'), EOT], [...textIds('ok'), EOT]], { tools: file, settings: { maxOutputBytes: 100 } });
    await agent.send('Go.', recordingHooks());
    expect(conversation.messages[2]!.content).toBe(`${'x'.repeat(100)}\n[output cut at 100 bytes]`);
  });

  test('stopping mid-message (Ctrl+C) ends the turn and keeps what was shown', async () => {
    const { agent, conversation } = agentWith([[...textIds('one two three four five six'), EOT]]);
    let tokens = 0;
    const hooks: TurnHooks = { onEvent: (event) => { if (event.type === 'token') tokens++; }, approve: async () => true, shouldStop: () => tokens >= 3 };
    const summary = await agent.send('Count.', hooks);
    expect(summary.finishReason).toBe('abort');
    expect(conversation.messages[1]).toEqual({ role: 'assistant', content: 'one two three' });
  });

  test('brave_search and wolfram_alpha call their HTTP APIs at an overridden base URL (a local server)', async () => {
    const requests: Array<{ url: string; token: string | undefined }> = [];
    const server = http.createServer((request, response) => {
      requests.push({ url: request.url ?? '', token: request.headers['x-subscription-token'] as string | undefined });
      const body = request.url!.startsWith('/res/v1/web/search')
        ? { web: { results: [{ title: 'Gold', url: 'https://example.org/gold', description: '$2,400', extra: 'dropped' }] } }
        : { queryresult: { success: true, pods: [{ title: 'Result', id: 'dropped', subpods: [{ plaintext: '7', img: 'dropped' }] }] } };
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    try {
      const tools = new ToolBox([], ['brave_search', 'wolfram_alpha'], {
        timeoutMs: HANG_GUARD_MS, maxOutputBytes: 4096,
        env: { BRAVE_API_KEY: 'brave-key', BRAVE_SEARCH_BASE_URL: base, WOLFRAM_ALPHA_APP_ID: 'wolfram-id', WOLFRAM_ALPHA_BASE_URL: base },
      });
      const call = (name: string, query: string): ToolCall => ({ id: 'c', type: 'function', function: { name, arguments: JSON.stringify({ query }) } });
      expect(await tools.run(call('brave_search', 'gold price'))).toEqual({ ok: true, content: '{"query":"gold price","top_k":[{"title":"Gold","url":"https://example.org/gold","description":"$2,400"}]}' });
      expect(await tools.run(call('wolfram_alpha', '100th decimal of pi'))).toEqual({ ok: true, content: '{"queryresult":{"success":true,"pods":[{"title":"Result","subpods":[{"plaintext":"7"}]}]}}' });
      expect(requests[0]).toEqual({ url: '/res/v1/web/search?q=gold+price', token: 'brave-key' });
      expect(requests[1]!.url).toBe('/v2/query?input=100th+decimal+of+pi&appid=wolfram-id&format=plaintext&output=json');
    } finally {
      server.close();
    }
  });
});

describe('tools files', () => {
  test('a command must be an argv array, not a shell string', () => {
    const file = toolsFile('shell', [{ type: 'function', function: { name: 'x' }, command: 'echo hi | cat' }]);
    expect(() => loadToolsFile(file)).toThrow(/"command" must be a non-empty array of strings/);
  });

  test('the schema the model sees has no command', () => {
    const file = toolsFile('schema', [{ ...weatherTool, command: ['./weather.py'] }]);
    const [tool] = loadToolsFile(file);
    expect(tool!.schema).toEqual(weatherTool);
    expect(tool!.command).toEqual([path.join(work, 'weather.py')]);
  });
});
