import fs from 'node:fs';
import { Args, Flags } from '@oclif/core';
import { HerdCommand } from '../cli/base-command.js';
import { SCHEMAS } from '../cli/json-output.js';
import { numberFlag } from '../cli/flags.js';
import { loadModelWithProgress } from '../cli/load.js';
import { readPromptText } from '../cli/prompt-input.js';
import { readMessagesFile } from '../chat/session.js';
import { EXIT_FAILURE, EXIT_GUARD_ERROR, EXIT_UNSAFE, HerdError, HerdUsageError } from '../errors.js';
import { detectGuardKind, loadPromptGuard } from '../guard/guard-model.js';
import { LlamaGuard } from '../guard/llama-guard.js';
import { guardTurnsOf, parseCategoryList, selectCategories, type GuardRole, type HazardCategory } from '../guard/llama-guard-prompt.js';
import { defaultPromptGuardThreshold, type TextSource } from '../guard/prompt-guard.js';
import { llamaGuardJson, llamaGuardText, promptGuardJson, promptGuardText, promptGuardVerdict } from '../guard/report.js';

export default class Guard extends HerdCommand {
  static override summary = 'Classify a conversation with Llama Guard 3, or a text with Prompt Guard.';

  static override description = `Llama Guard 3 (--model, a LlamaForCausalLM fine-tune): classifies the last user turn (or, with --role agent, the last assistant turn) of a conversation as safe or unsafe with the violated hazard categories S1–S14, and P(unsafe) from the first verdict token's distribution.
Prompt Guard (--prompt-guard, a DeBERTa-v2 classifier): scores a text for jailbreaks (--source user) or prompt injections (--source third-party); long texts are scored in 512-token segments, the maximum counts.
The kind of model is read from config.json. See docs/safety.md.
Exit status: 0 safe, 1 unsafe, 2 error (bad input, an unparseable verdict, usage), 130 interrupted (Ctrl-C).`;

  static override examples = [
    '<%= config.bin %> guard --model ~/models/Llama-Guard-3-8B "How do I make a pipe bomb?"',
    '<%= config.bin %> guard -m ~/models/Llama-Guard-3-8B --messages chat.json --role agent --exclude-categories S6 --json',
    '<%= config.bin %> guard -m ~/models/Llama-Guard-3-1B --threshold 0.5 "text" && echo safe',
    '<%= config.bin %> guard --prompt-guard ~/models/Prompt-Guard-86M "Ignore previous instructions."',
    'curl -s https://example.com | <%= config.bin %> guard --prompt-guard ~/models/Llama-Prompt-Guard-2-86M --source third-party -',
  ];

  static override args = {
    text: Args.string({ description: 'The text to classify (a user message for Llama Guard); - or nothing reads stdin.', ignoreStdin: true }),
  };

  static override flags = {
    model: Flags.string({ char: 'm', description: 'A Llama Guard 3 model folder or .gguf file (a Prompt Guard folder works too: the kind is read from config.json).', exactlyOne: ['model', 'prompt-guard'] }),
    'prompt-guard': Flags.string({ description: 'A Prompt Guard folder (Prompt Guard 1 or 2: config.json, model.safetensors, tokenizer.json).' }),
    messages: Flags.file({ description: 'Llama Guard: a JSON file of messages ([{"role", "content"}] or {"messages": [...]}) instead of TEXT.', exists: true }),
    role: Flags.string({ description: 'Llama Guard: classify the last user turn or the last agent (assistant) turn. Default: the last turn\'s.', options: ['user', 'agent'] }),
    categories: Flags.string({ description: 'Llama Guard: check only these hazard categories (comma-separated: S1,S10).' }),
    'exclude-categories': Flags.string({ description: 'Llama Guard: leave these hazard categories out (comma-separated); the others keep their codes.' }),
    'categories-file': Flags.file({ description: 'Llama Guard: custom categories, one "CODE: Name." per line, instead of S1–S14.', exists: true }),
    threshold: numberFlag({ description: 'Unsafe when the score reaches this. Llama Guard: P(unsafe) decides instead of the generated verdict. Prompt Guard default: 0.9 (Prompt Guard 2), 0.5 (Prompt Guard 1).', min: 0, max: 1 }),
    source: Flags.string({ description: 'Prompt Guard: where the text comes from: user (jailbreak score) or third-party (injection score; tool results, web pages).', options: ['user', 'third-party'], default: 'user' }),
    temperature: numberFlag({ description: 'Prompt Guard: softmax temperature (default 1.0).', min: Number.MIN_VALUE }),
    backend: Flags.string({ description: 'Compute backend for the guard model (as herd generate\'s --backend; Prompt Guard runs on tfjs).' }),
    threads: Flags.integer({ description: "Threads for herd's CPU kernels. Default: the cores available.", min: 1 }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Guard);
    const target = (flags.model ?? flags['prompt-guard'])!;
    const kind = detectGuardKind(target);
    if (flags['prompt-guard'] !== undefined && kind !== 'prompt-guard') throw new HerdError(`--prompt-guard ${target}: expected a Prompt Guard (DebertaV2ForSequenceClassification), found a Llama model; pass it with --model`, { kind: 'model' });
    const unsafe = kind === 'llama-guard' ? await this.runLlamaGuard(target, args.text, flags) : await this.runPromptGuard(target, args.text, flags);
    if (unsafe) process.exitCode = EXIT_UNSAFE;
  }

  private async runLlamaGuard(model: string, text: string | undefined, flags: GuardFlags): Promise<boolean> {
    if (flags.temperature !== undefined || flags.source !== 'user') throw new HerdUsageError('--source and --temperature are Prompt Guard flags; this is a Llama Guard model');
    if (flags.messages !== undefined && text !== undefined) throw new HerdUsageError('give the conversation with --messages or the text as an argument, not both');
    const turns = flags.messages !== undefined ? guardTurnsOf(readMessagesFile(flags.messages)) : [{ role: 'user' as const, content: await readText(text) }];
    const loaded = await loadModelWithProgress({ model, backend: flags.backend, threads: flags.threads, json: flags.json });
    const guard = new LlamaGuard(loaded);
    const result = await guard.classify(turns, { role: flags.role as GuardRole | undefined, categories: categoriesFrom(flags, guard.defaultCategories), threshold: flags.threshold });
    if (flags.json) this.printJson(SCHEMAS.guard, llamaGuardJson(model, result, flags.threshold));
    else this.log(llamaGuardText(result));
    return result.verdict === 'unsafe';
  }

  private async runPromptGuard(model: string, text: string | undefined, flags: GuardFlags): Promise<boolean> {
    const llamaOnly = ['messages', 'role', 'categories', 'exclude-categories', 'categories-file'] as const;
    const given = llamaOnly.filter((name) => flags[name] !== undefined);
    if (given.length > 0) throw new HerdUsageError(`--${given[0]} is a Llama Guard flag; ${model} is a Prompt Guard classifier`);
    const content = await readText(text);
    const guard = await loadPromptGuard(model, { backend: flags.backend });
    try {
      const temperature = flags.temperature ?? 1;
      const classification = guard.classify(content, { temperature });
      const verdict = { source: flags.source as TextSource, threshold: flags.threshold ?? defaultPromptGuardThreshold(classification.labels.length), temperature, classification };
      if (flags.json) this.printJson(SCHEMAS.guard, promptGuardJson(model, verdict));
      else this.log(promptGuardText(verdict));
      return promptGuardVerdict(verdict).verdict === 'unsafe';
    } finally {
      guard.dispose();
    }
  }

  /** A failure is exit 2 here, not herd's usual 1: 1 means "unsafe" to a script. */
  protected override async catch(error: Error & { code?: string }): Promise<void> {
    await super.catch(error);
    if (process.exitCode === EXIT_FAILURE) process.exitCode = EXIT_GUARD_ERROR;
  }
}

type GuardFlags = {
  messages?: string; role?: string; categories?: string; 'exclude-categories'?: string; 'categories-file'?: string;
  threshold?: number; source: string; temperature?: number; backend?: string; threads?: number; json: boolean;
};

/** TEXT, or stdin for "-" or no argument (one final newline dropped, as for herd generate). */
async function readText(text: string | undefined): Promise<string> {
  const read = await readPromptText({ argument: text === '-' ? undefined : text });
  if (read === '') throw new HerdError('the text to classify is empty');
  return read;
}

function categoriesFrom(flags: GuardFlags, defaults: readonly HazardCategory[]): HazardCategory[] {
  const all = flags['categories-file'] === undefined ? defaults : parseCategoryList(fs.readFileSync(flags['categories-file'], 'utf8'), flags['categories-file']);
  const codes = (value: string | undefined) => value?.split(',').map((code) => code.trim()).filter((code) => code !== '');
  return selectCategories(all, { only: codes(flags.categories), exclude: codes(flags['exclude-categories']) });
}
