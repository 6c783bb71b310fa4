import fs from 'node:fs';
import { Flags } from '@oclif/core';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { SCHEMAS } from '../cli/json-output.js';
import { parseDate } from '../cli/date.js';
import { resolveModelArgument } from '../cli/model-argument.js';
import { renderConversation } from '../chat/render.js';
import { checkMessage } from '../chat/session.js';
import { loadToolsFile, parseBuiltinTools } from '../chat/tools.js';
import { DEFAULT_MODEL_DIR } from '../engine/load.js';
import { HerdTokenizer } from '../engine/tokenizer.js';
import { readJsonFile } from '../formats/files.js';
import { HerdError } from '../errors.js';
import { parseJsonKeepingFloats } from '../templates/python-json.js';
import { renderTemplateVariables, selectChatTemplate, type ChatMessage } from '../templates/chat-template.js';

export default class Prompt extends HerdCommand {
  static override summary = 'Print the exact prompt a model receives for a conversation (its chat template, rendered).';

  static override description = `Renders the model's own chat_template (tokenizer_config.json) as transformers does, byte for byte.
Give --messages FILE (a JSON array of messages in OpenAI shape, or {"messages": [...]}, as herd chat exports), optionally with --tools, --builtin-tools and --date; or --vars FILE with the template's variables as one JSON object (messages, tools, builtin_tools, tools_in_user_message, date_string, add_generation_prompt), passed as they are.
Only the tokenizer files are read, not the weights.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> prompt --model ~/models/Llama-3.1-8B-Instruct --messages chat.json',
    '<%= config.bin %> prompt -m ~/models/Llama-3.1-8B-Instruct --messages chat.json --builtin-tools brave_search,wolfram_alpha --date 2024-07-26',
    '<%= config.bin %> prompt -m ~/models/Llama-3.1-8B-Instruct --vars case.json --ids',
    '<%= config.bin %> prompt -m ~/models/Llama-3.1-8B-Instruct --messages chat.json --tools tools.json --json',
  ];

  static override flags = {
    model: Flags.string({ char: 'm', description: `Hugging Face model folder (tokenizer.json, tokenizer_config.json), or a Hugging Face id org/name[@revision] (only its tokenizer and configs are downloaded). Default: the embedded stories260K (which has no chat template).` }),
    messages: Flags.file({ description: 'JSON file of messages: [{"role", "content", …}] or {"messages": [...]}.', exists: true, exactlyOne: ['messages', 'vars'] }),
    vars: Flags.file({ description: 'JSON file of template variables, passed to the template as they are.', exists: true }),
    tools: Flags.file({ description: 'With --messages: a herd tools file (OpenAI function schemas; each `command` is left out of the prompt).', exists: true, exclusive: ['vars'] }),
    'builtin-tools': Flags.string({ description: 'With --messages: built-in tools to switch on (brave_search, wolfram_alpha, code_interpreter), comma-separated or repeated.', multiple: true, default: [], exclusive: ['vars'] }),
    date: Flags.string({ description: 'With --messages: date_string as YYYY-MM-DD. Default: today.', exclusive: ['vars'] }),
    'no-generation-prompt': Flags.boolean({ description: 'With --messages: end after the last message instead of opening the assistant\'s turn.', default: false, exclusive: ['vars'] }),
    ids: Flags.boolean({ description: 'Print the token ids (a JSON array) instead of the text.', default: false }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Prompt);
    const tokenizer = HerdTokenizer.fromDir((await resolveModelArgument(flags.model, { json: flags.json, part: 'tokenizer' })) ?? DEFAULT_MODEL_DIR);
    const text = flags.vars !== undefined
      ? renderVariables(tokenizer, readVariables(flags.vars))
      : renderConversation(tokenizer, readMessages(flags.messages!), {
        tools: flags.tools === undefined ? undefined : loadToolsFile(flags.tools).map((tool) => tool.schema),
        builtinTools: parseBuiltinTools(flags['builtin-tools']),
        date: parseDate(flags.date),
      }, !flags['no-generation-prompt']).text;
    // The template writes <|begin_of_text|> itself: no special tokens are added.
    const ids = tokenizer.encode(text, false);
    if (flags.json) this.printJson(SCHEMAS.prompt, { prompt: text, ids, token_count: ids.length });
    else if (flags.ids) this.log(JSON.stringify(ids));
    else process.stdout.write(text);
  }
}

/** The --vars file, read as Python's json.load reads it (a float such as 391.0 stays a float). */
function readVariables(file: string): unknown {
  try {
    return parseJsonKeepingFloats(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new HerdError(`${file}: not valid JSON (${(error as Error).message.split('\n')[0]})`);
  }
}

/** Variables as given, with the tokenizer's special tokens unless the file sets them. */
function renderVariables(tokenizer: HerdTokenizer, variables: unknown): string {
  if (typeof variables !== 'object' || variables === null || Array.isArray(variables)) throw new HerdError('--vars: the file must hold one JSON object of template variables');
  const record = variables as Record<string, unknown>;
  const hasTools = record.tools !== undefined && record.tools !== null;
  const template = selectChatTemplate(tokenizer.settings.chatTemplate, { source: 'tokenizer_config.json', hasTools });
  const special = { bos_token: tokenizer.settings.bosToken ?? '', eos_token: tokenizer.settings.eosToken ?? '' };
  return renderTemplateVariables(template, { ...special, ...record }, 'tokenizer_config.json');
}

function readMessages(file: string): ChatMessage[] {
  const parsed = readJsonFile(file, true);
  const list = Array.isArray(parsed) ? parsed : (parsed as { messages?: unknown } | null)?.messages;
  if (!Array.isArray(list)) throw new HerdError(`${file}: expected a JSON array of messages or {"messages": [...]}`);
  list.forEach((message, index) => checkMessage(message, `${file}: message ${index}`));
  return list as ChatMessage[];
}
