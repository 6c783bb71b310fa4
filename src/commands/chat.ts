import path from 'node:path';
import { Flags } from '@oclif/core';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { parseDate } from '../cli/date.js';
import { connectEndpoint, endpointFlags, endpointJson, remoteChatOptions, type RemoteTarget } from '../cli/endpoint.js';
import { modelFlags, numberFlag } from '../cli/flags.js';
import { loadModelWithProgress } from '../cli/load.js';
import { modelDisplayName } from '../cli/model-argument.js';
import { samplingFlags, samplingOptions, type SamplingFlags } from '../cli/sampling.js';
import { loadShield, shieldFlags } from '../cli/shields.js';
import { Conversation } from '../chat/conversation.js';
import { ChatAgent, type ChatSourceOptions } from '../chat/loop.js';
import { runScript } from '../chat/script.js';
import { SESSION_FORMAT, SESSION_VERSION, exportSession, loadSession, saveSession, type ChatSession, type SessionSettings } from '../chat/session.js';
import { EngineTokenSource } from '../chat/token-source.js';
import { DEFAULT_TOOL_SETTINGS, ToolBox, loadToolsFile, parseBuiltinTools } from '../chat/tools.js';
import type { LoadedModel } from '../engine/load.js';
import type { SamplingOptions } from '../engine/sampling.js';
import { selectChatTemplate } from '../templates/chat-template.js';

export default class Chat extends HerdCommand {
  static override summary = 'Chat with a Llama 3.1 Instruct model, with tool calling, in the terminal.';

  static override description = `At a terminal, an interactive chat: replies stream, each tool call is a panel you approve (y/n/a), Ctrl+C stops a reply, and slash commands (/help) edit, save and load the conversation.
When stdin or stdout is not a terminal, each input line is a user turn and replies go to stdout (--json: NDJSON events token, tool_call, tool_result, turn_end); tools then run only with --yes.
Custom tools come from --tools FILE (OpenAI function schemas, each with a "command" argv that gets the arguments JSON on stdin); built-in tools from --builtin-tools. See docs/chat.md.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> chat --model ~/models/Llama-3.1-8B-Instruct',
    '<%= config.bin %> chat -m ~/models/Llama-3.1-8B-Instruct --builtin-tools code_interpreter,brave_search --tools tools.json',
    '<%= config.bin %> chat -m ~/models/Llama-3.1-8B-Instruct --resume chat.json',
    'printf "Hi!\\nWhat can you do?\\n" | <%= config.bin %> chat -m ~/models/Llama-3.1-8B-Instruct --json',
    '<%= config.bin %> chat --resume chat.json --export chat.jsonl < /dev/null',
    '<%= config.bin %> chat -m ~/models/Llama-3.1-8B-Instruct --guard ~/models/Llama-Guard-3-1B --prompt-guard ~/models/Prompt-Guard-86M --builtin-tools brave_search',
    '<%= config.bin %> chat --endpoint http://gpu-box:8000 --template-from ~/models/Llama-3.1-8B-Instruct --builtin-tools code_interpreter',
  ];

  static override flags = {
    ...modelFlags,
    ...endpointFlags,
    ...samplingFlags,
    system: Flags.string({ description: 'System message.' }),
    tools: Flags.file({ description: 'JSON file of custom tools: OpenAI function schemas, each with a "command" argv.', exists: true }),
    'builtin-tools': Flags.string({ description: 'Built-in tools to switch on: brave_search, wolfram_alpha, code_interpreter (comma-separated or repeated).', multiple: true }),
    date: Flags.string({ description: 'Date passed to the chat template as date_string (YYYY-MM-DD). Default: today.' }),
    yes: Flags.boolean({ char: 'y', description: 'Run tool calls without asking.', default: false }),
    resume: Flags.file({ description: 'Continue a session saved with /save (its model, tools and date unless given again).', exists: true }),
    save: Flags.string({ description: 'Save the session to this JSON file when the chat ends.' }),
    export: Flags.string({ description: 'Write the conversation as {"messages": [...]} JSONL (for finetune) when the chat ends.' }),
    'max-new-tokens': Flags.integer({ char: 'n', description: 'Most tokens in one assistant message.', default: 1024, min: 1 }),
    'tool-timeout': numberFlag({ description: 'Seconds a tool may run before it is stopped (default 30).', min: 0.1 }),
    'max-tool-output': Flags.integer({ description: 'Bytes of a tool\'s output given to the model.', default: DEFAULT_TOOL_SETTINGS.maxOutputBytes, min: 1 }),
    'max-tool-rounds': Flags.integer({ description: 'Most rounds of tool calls in one assistant turn.', default: 8, min: 1 }),
    ...shieldFlags,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Chat);
    const resumed = flags.resume === undefined ? undefined : loadSession(flags.resume);
    const toolsFile = flags.tools ?? resumed?.settings.tools_file ?? null;
    const builtinTools = parseBuiltinTools(flags['builtin-tools'] ?? resumed?.settings.builtin_tools ?? []);
    const dateText = flags.date ?? resumed?.settings.date ?? null;
    const date = parseDate(dateText ?? undefined);
    const customTools = toolsFile === null ? [] : loadToolsFile(toolsFile);

    const engine = flags.endpoint === undefined
      ? await localEngine({ ...flags, model: flags.model ?? resumed?.settings.model }, flags)
      : remoteEngine(await connectEndpoint({ ...flags, endpoint: flags.endpoint }), flags);
    const { sampling, sourceOptions, modelName } = engine;
    const guards = await loadShield(flags, engine.loaded);
    const conversation = new Conversation(resumed?.messages ?? []);
    if (flags.system !== undefined) conversation.setSystem(flags.system);
    const tools = new ToolBox(customTools, builtinTools, {
      timeoutMs: (flags['tool-timeout'] ?? DEFAULT_TOOL_SETTINGS.timeoutMs / 1000) * 1000,
      maxOutputBytes: flags['max-tool-output'],
      env: process.env,
    });
    const agent = new ChatAgent(conversation, { ...sourceOptions, tools, date, maxNewTokens: flags['max-new-tokens'], maxToolRounds: flags['max-tool-rounds'], shield: guards?.shield });
    const settings: SessionSettings = {
      model: modelName, builtin_tools: builtinTools, tools_file: toolsFile, date: dateText, max_new_tokens: flags['max-new-tokens'],
      sampling: { temperature: sampling.temperature, top_p: sampling.topP, top_k: sampling.topK, min_p: sampling.minP, repetition_penalty: sampling.repetitionPenalty, seed: sampling.seed },
    };
    const session = (): ChatSession => ({ format: SESSION_FORMAT, version: SESSION_VERSION, settings, messages: conversation.messages });

    try {
      if (process.stdin.isTTY && process.stdout.isTTY && !flags.json) {
        // Loaded only here, so that piped chats never load Ink and React.
        const { runTui } = await import('../tui/run.js');
        await runTui({
          agent, model: modelDisplayName(modelName), approveAll: flags.yes,
          session: {
            save: (file) => {
              const target = file ?? `herd-chat-${new Date().toISOString().replace(/[:.]/g, '-')}.json`;
              saveSession(target, session());
              return target;
            },
            load: (file) => {
              conversation.messages = loadSession(file).messages;
            },
          },
        });
      } else {
        await runScript(agent, { input: process.stdin, output: process.stdout, warn: (line) => process.stderr.write(`${line}\n`), json: flags.json, approveAll: flags.yes, endpoint: engine.endpoint });
      }
    } finally {
      engine.dispose();
      guards?.dispose();
    }
    if (flags.save !== undefined) saveSession(flags.save, session());
    if (flags.export !== undefined) exportSession(flags.export, conversation.messages);
  }
}

/** What the chat runs on: its source, the sampling it uses and the name a saved session records. */
interface ChatEngine {
  sourceOptions: ChatSourceOptions;
  sampling: SamplingOptions;
  modelName: string;
  /** The local model, null on a server (the shields then pick their own backend). */
  loaded: LoadedModel | null;
  endpoint?: { url: string; model: string };
  dispose(): void;
}

async function localEngine(loadFlags: Parameters<typeof loadModelWithProgress>[0], flags: SamplingFlags): Promise<ChatEngine> {
  const loaded = await loadModelWithProgress(loadFlags);
  selectChatTemplate(loaded.tokenizer.settings.chatTemplate, { source: path.join(loaded.dir, 'tokenizer_config.json'), hasTools: false });
  const sampling = samplingOptions(loaded, flags);
  const source = new EngineTokenSource(loaded, sampling);
  return {
    sourceOptions: { source, tokenizer: loaded.tokenizer, stopTokenIds: loaded.generation.eosTokenIds },
    sampling,
    modelName: loaded.dir,
    loaded,
    dispose: () => source.dispose(),
  };
}

/** On a server: sampling defaults come from --template-from's generation_config.json, else greedy. */
function remoteEngine(target: RemoteTarget, flags: SamplingFlags): ChatEngine {
  const generation = target.template?.generation ?? { eosTokenIds: [], doSample: false, temperature: null, topP: null, topK: null, repetitionPenalty: null };
  const sampling = samplingOptions({ generation }, flags);
  const { options } = remoteChatOptions(target, sampling);
  return { sourceOptions: options, sampling, modelName: target.capabilities.model, loaded: null, endpoint: endpointJson(target.capabilities), dispose: () => undefined };
}
