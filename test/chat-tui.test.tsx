import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { render } from 'ink-testing-library';
import { Conversation } from '../src/chat/conversation.js';
import { ChatAgent } from '../src/chat/loop.js';
import { renderConversation } from '../src/chat/render.js';
import { ToolBox, type CustomTool } from '../src/chat/tools.js';
import { ChatApp } from '../src/tui/ChatApp.js';
import { EOT, LLAMA_STOP_IDS, ScriptedTokenSource, llamaTokenizer, textIds } from './chat-scripted-source.js';
import { HANG_GUARD_MS } from './hang-guard.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-chat-tui-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

function app(replies: number[][], customTools: CustomTool[] = []) {
  const source = new ScriptedTokenSource(replies);
  const tools = new ToolBox(customTools, [], { timeoutMs: HANG_GUARD_MS, maxOutputBytes: 4096, env: {} });
  const agent = new ChatAgent(new Conversation(), { source, tokenizer: llamaTokenizer, tools, stopTokenIds: LLAMA_STOP_IDS, maxNewTokens: 512, maxToolRounds: 4 });
  const saved: string[] = [];
  const ui = render(<ChatApp agent={agent} model="tiny" approveAll={false} session={{ save: (file) => { saved.push(file ?? 'default.json'); return file ?? 'default.json'; }, load: () => {} }} />);
  return { ui, agent, saved };
}

/**
 * Polls for a frame. The limit only stops a broken UI (with a message naming the missing frame,
 * which jest's hang guard would not give); a loaded machine that starts a tool process slowly
 * must not reach it.
 */
async function waitForFrame(ui: ReturnType<typeof render>, test: (frame: string) => boolean, what: string): Promise<string> {
  const deadline = Date.now() + 5 * 60_000;
  while (Date.now() < deadline) {
    const frame = ui.lastFrame() ?? '';
    if (test(frame)) return frame;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}; last frame:\n${ui.lastFrame()}`);
}

/** Types a line the way a terminal sends it: the characters, then Enter as its own key press. */
async function typeLine(ui: ReturnType<typeof render>, text: string): Promise<void> {
  ui.stdin.write(text);
  await new Promise((resolve) => setTimeout(resolve, 20));
  ui.stdin.write('\r');
}

test('tokens stream into the reply as they are generated, then the status line counts them', async () => {
  const reply = 'Hello there, my friend. How are you today?';
  const { ui, agent } = app([[...textIds(reply), EOT]]);
  await waitForFrame(ui, (frame) => frame.includes('tiny · 0/131072 tokens'), 'the status line');
  await typeLine(ui, 'hi');
  const done = await waitForFrame(ui, (frame) => frame.includes(reply) && frame.includes('Enter sends'), 'the full reply');
  // Some frame showed part of the reply while it was still being generated.
  expect(ui.frames.some((frame) => frame.includes('Hello there') && !frame.includes('today?') && frame.includes('Ctrl+C stops'))).toBe(true);
  expect(done).toContain('> hi');
  // The status line counts the prompt the model was given and the reply with its <|eot_id|>.
  const promptIds = renderConversation(llamaTokenizer, [{ role: 'user', content: 'hi' }], agent.promptSettings).ids;
  const contextTokens = promptIds.length + textIds(reply).length + 1;
  expect(done).toContain(`tiny · ${contextTokens}/131072 tokens`);
  ui.unmount();
});

test('a tool call is a panel that goes from awaiting approval to running to its result', async () => {
  const script = path.join(work, 'slow-echo.mjs');
  fs.writeFileSync(script, `let s = ''; process.stdin.on('data', (c) => { s += c; }); process.stdin.on('end', () => setTimeout(() => console.log('sunny in ' + JSON.parse(s).city), 300));`);
  const weather: CustomTool = { schema: { type: 'function', function: { name: 'weather' } }, command: [process.execPath, script], cwd: work };
  const { ui } = app([
    [...textIds('{"name": "weather", "parameters": {"city": "Paris"}}'), EOT],
    [...textIds('It is sunny in Paris.'), EOT],
  ], [weather]);
  await typeLine(ui, 'Weather in Paris?');
  const awaiting = await waitForFrame(ui, (frame) => frame.includes('awaiting approval'), 'the approval prompt');
  expect(awaiting).toContain('tool weather');
  expect(awaiting).toContain('"city": "Paris"'); // pretty-printed arguments
  expect(awaiting).not.toContain('{"name"'); // the raw call text is replaced by the panel
  ui.stdin.write('y');
  const running = await waitForFrame(ui, (frame) => frame.includes('running…'), 'the running state');
  expect(running).not.toContain('awaiting approval');
  const finished = await waitForFrame(ui, (frame) => frame.includes('It is sunny in Paris.'), 'the final reply');
  expect(finished).toContain('result');
  expect(finished).toContain('sunny in Paris');
  ui.unmount();
});

test('slash commands: /help lists the commands, /save passes its file, /undo redraws the transcript', async () => {
  const { ui, agent, saved } = app([[...textIds('First answer.'), EOT]]);
  await typeLine(ui, '/help');
  const help = await waitForFrame(ui, (frame) => frame.includes('/regen'), 'the help text');
  for (const command of ['/system [TEXT]', '/tools', '/clear', '/undo', '/save [FILE]', '/load FILE', '/exit']) expect(help).toContain(command);

  await typeLine(ui, 'question');
  await waitForFrame(ui, (frame) => frame.includes('First answer.') && frame.includes('Enter sends'), 'the answer');
  await typeLine(ui, '/save chat.json');
  await waitForFrame(ui, (frame) => frame.includes('saved chat.json'), 'the save note');
  expect(saved).toEqual(['chat.json']);
  await typeLine(ui, '/undo');
  const undone = await waitForFrame(ui, (frame) => frame.includes('removed your last message'), 'the undo note');
  expect(undone).not.toContain('First answer.');
  expect(agent.conversation.messages).toEqual([]);
  ui.unmount();
});

test('Ctrl+C stops the reply being generated and the chat goes on', async () => {
  const long = Array.from({ length: 300 }, (_, index) => `word${index}`).join(' ');
  const { ui, agent } = app([[...textIds(long), EOT], [...textIds('Second reply.'), EOT]]);
  await typeLine(ui, 'talk');
  await waitForFrame(ui, (frame) => frame.includes('word3 '), 'the start of the reply');
  ui.stdin.write('\x03');
  await waitForFrame(ui, (frame) => frame.includes('Enter sends'), 'the prompt to come back');
  const kept = agent.conversation.messages[1]!.content;
  expect(kept.startsWith('word0 word1 word2 word3')).toBe(true);
  expect(kept.length).toBeLessThan(long.length);
  await typeLine(ui, 'again');
  await waitForFrame(ui, (frame) => frame.includes('Second reply.'), 'the next reply');
  ui.unmount();
});

test('while a reply is generated, the status line counts its tokens and speed live', async () => {
  const reply = 'One two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen.';
  const { ui, agent } = app([[...textIds(reply), EOT]]);
  await waitForFrame(ui, (frame) => frame.includes('tiny · 0/131072 tokens'), 'the status line');
  await typeLine(ui, 'count');
  await waitForFrame(ui, (frame) => frame.includes('fifteen.') && frame.includes('Enter sends'), 'the full reply');
  const promptTokens = renderConversation(llamaTokenizer, [{ role: 'user', content: 'count' }], agent.promptSettings).ids.length;
  const finalTokens = promptTokens + textIds(reply).length + 1;
  // Frames drawn while the reply was being generated, with their token count and speed.
  const live = ui.frames
    .filter((frame) => frame.includes('Ctrl+C stops'))
    .map((frame) => /tiny · (\d+)\/131072 tokens · ([\d.]+) tok\/s/.exec(frame))
    .filter((match) => match !== null)
    .map((match) => ({ tokens: Number(match[1]), speed: Number(match[2]) }));
  const counts = live.map((status) => status.tokens).filter((count) => count > 0);
  expect(new Set(counts.filter((count) => count > promptTokens && count < finalTokens)).size).toBeGreaterThan(1);
  counts.forEach((count, index) => expect(count).toBeGreaterThanOrEqual(counts[index - 1] ?? 0));
  expect(live.some((status) => status.speed > 0)).toBe(true);
  ui.unmount();
});
