/**
 * The tools a chat can run: custom tools from a --tools file (a program each) and Llama 3.1's
 * built-in tools. See docs/chat.md, "Running tools", for the safety rules.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readJsonFile } from '../formats/files.js';
import { HerdError } from '../errors.js';
import type { ToolCall } from '../templates/chat-template.js';
import { CODE_INTERPRETER } from '../templates/tool-calls.js';
import { runSubprocess, type SubprocessLimits, type SubprocessResult } from './subprocess.js';

export const BRAVE_SEARCH = 'brave_search';
export const WOLFRAM_ALPHA = 'wolfram_alpha';
export const BUILTIN_TOOLS: readonly string[] = [BRAVE_SEARCH, WOLFRAM_ALPHA, CODE_INTERPRETER];

/** An OpenAI function schema, as the template renders it. */
export interface FunctionSchema {
  type: 'function';
  function: { name: string; description?: string; parameters?: Record<string, unknown> };
}

/** A --tools entry: the schema the model sees and the program herd runs. */
export interface CustomTool {
  schema: FunctionSchema;
  /** argv: the program and its fixed arguments; the call's arguments arrive as JSON on stdin. */
  command: string[];
  /** Where the program runs: the tools file's folder. */
  cwd: string;
}

export interface ToolOutcome {
  ok: boolean;
  /** What the model receives as the tool's result. */
  content: string;
}

export interface ToolSettings extends SubprocessLimits {
  /** Where API keys and base URLs are read (process.env in the CLI). */
  env: NodeJS.ProcessEnv;
}

export const DEFAULT_TOOL_SETTINGS: Omit<ToolSettings, 'env'> = { timeoutMs: 30_000, maxOutputBytes: 16_384 };

/** Reads a --tools file: a JSON array of OpenAI function schemas, each with a `command` argv. */
export function loadToolsFile(file: string): CustomTool[] {
  const parsed = readJsonFile(file, true);
  if (!Array.isArray(parsed)) throw new HerdError(`${file}: a tools file is a JSON array of function schemas`);
  const cwd = path.dirname(path.resolve(file));
  const tools = parsed.map((entry, index) => customTool(entry, `${file}: tool ${index}`, cwd));
  const names = tools.map((tool) => tool.schema.function.name);
  const repeated = names.find((name, index) => names.indexOf(name) !== index);
  if (repeated !== undefined) throw new HerdError(`${file}: two tools are named "${repeated}"`);
  return tools;
}

function customTool(entry: unknown, where: string, cwd: string): CustomTool {
  const record = (typeof entry === 'object' && entry !== null ? entry : {}) as Record<string, unknown>;
  const fn = record.function as Record<string, unknown> | undefined;
  if (record.type !== 'function' || typeof fn !== 'object' || fn === null || typeof fn.name !== 'string' || fn.name === '') {
    throw new HerdError(`${where}: expected {"type": "function", "function": {"name": …}, "command": […]}`);
  }
  if (BUILTIN_TOOLS.includes(fn.name)) throw new HerdError(`${where}: "${fn.name}" is a built-in tool; use --builtin-tools`);
  const command = record.command;
  if (!Array.isArray(command) || command.length === 0 || !command.every((part) => typeof part === 'string' && part !== '')) {
    throw new HerdError(`${where} (${fn.name}): "command" must be a non-empty array of strings (argv; no shell)`);
  }
  const { command: _omitted, ...schema } = record;
  // A relative program path (./tool.py) is relative to the tools file, not to where herd runs.
  const program = command[0].includes('/') ? path.resolve(cwd, command[0]) : command[0];
  return { schema: schema as unknown as FunctionSchema, command: [program, ...command.slice(1)], cwd };
}

/** Checks --builtin-tools names. */
export function parseBuiltinTools(names: readonly string[]): string[] {
  const list = names.flatMap((name) => name.split(',')).map((name) => name.trim()).filter((name) => name !== '');
  const unknown = list.find((name) => !BUILTIN_TOOLS.includes(name));
  if (unknown !== undefined) throw new HerdError(`unknown built-in tool "${unknown}"; choose from ${BUILTIN_TOOLS.join(', ')}`);
  return [...new Set(list)];
}

/** Runs tool calls; never throws: every failure is a result the model can read. */
export class ToolBox {
  private readonly custom: Map<string, CustomTool>;

  constructor(customTools: readonly CustomTool[], readonly builtinTools: readonly string[], private readonly settings: ToolSettings) {
    this.custom = new Map(customTools.map((tool) => [tool.schema.function.name, tool]));
  }

  /** The schemas the template renders for the model. */
  get schemas(): FunctionSchema[] {
    return [...this.custom.values()].map((tool) => tool.schema);
  }

  /** One line per tool, for /tools. */
  describe(): string[] {
    const builtins = this.builtinTools.map((name) => `${name} (built-in${this.builtinStatus(name)})`);
    const custom = [...this.custom.values()].map((tool) => `${tool.schema.function.name}: runs ${tool.command.join(' ')}`);
    return [...builtins, ...custom];
  }

  async run(call: ToolCall): Promise<ToolOutcome> {
    const name = call.function.name;
    let args: Record<string, unknown>;
    try {
      args = JSON.parse(call.function.arguments) as Record<string, unknown>;
    } catch {
      return failure(`the arguments of ${name} are not JSON`);
    }
    const custom = this.custom.get(name);
    if (custom) return this.runCustom(custom, call.function.arguments);
    if (!this.builtinTools.includes(name)) return failure(`there is no tool named "${name}"`);
    if (name === CODE_INTERPRETER) return this.runCode(String(args.code ?? ''));
    return this.search(name, String(args.query ?? ''));
  }

  private async runCustom(tool: CustomTool, argumentsJson: string): Promise<ToolOutcome> {
    const result = await runSubprocess(tool.command, argumentsJson, { ...this.limits(), cwd: tool.cwd });
    return this.processOutcome(tool.schema.function.name, result, result.stdout.trimEnd());
  }

  /** Python in a fresh temporary folder that is removed afterwards. */
  private async runCode(code: string): Promise<ToolOutcome> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'herd-code-'));
    try {
      fs.writeFileSync(path.join(dir, 'cell.py'), code);
      // -I: isolated mode, no user site-packages or PYTHON* variables from herd's environment.
      const result = await runSubprocess(['python3', '-I', 'cell.py'], '', { ...this.limits(), cwd: dir });
      const output = [result.stdout.trimEnd(), result.stderr.trimEnd()].filter((part) => part !== '').join('\n');
      return this.processOutcome(CODE_INTERPRETER, result, output);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  private processOutcome(name: string, result: SubprocessResult, output: string): ToolOutcome {
    if (result.startError !== undefined) return failure(`${name} could not start: ${result.startError}`);
    if (result.timedOut) return failure(`${name} timed out after ${this.settings.timeoutMs / 1000} s`);
    const cut = result.truncated ? `\n[output cut at ${this.settings.maxOutputBytes} bytes]` : '';
    if (result.exitCode !== 0 && !result.truncated) {
      const detail = (name === CODE_INTERPRETER ? output : result.stderr.trim()) || 'no message';
      return failure(`${name} exited with code ${result.exitCode}: ${detail}`);
    }
    return { ok: true, content: output + cut };
  }

  private async search(name: string, query: string): Promise<ToolOutcome> {
    const endpoint = SEARCH_ENDPOINTS[name]!;
    const key = this.settings.env[endpoint.keyVariable];
    if (!key) return failure(`${name} is not configured: set ${endpoint.keyVariable} to enable it`);
    const base = this.settings.env[endpoint.baseUrlVariable] || endpoint.defaultBaseUrl;
    try {
      const response = await fetch(endpoint.url(base, query, key), { headers: endpoint.headers(key), signal: AbortSignal.timeout(this.settings.timeoutMs) });
      if (!response.ok) return failure(`${name} answered HTTP ${response.status} ${response.statusText}`);
      const content = JSON.stringify(endpoint.clean(query, await response.json()));
      return { ok: true, content: capText(content, this.settings.maxOutputBytes) };
    } catch (error) {
      const timedOut = (error as Error).name === 'TimeoutError';
      return failure(timedOut ? `${name} timed out after ${this.settings.timeoutMs / 1000} s` : `${name} failed: ${(error as Error).message}`);
    }
  }

  private builtinStatus(name: string): string {
    const endpoint = SEARCH_ENDPOINTS[name];
    if (endpoint === undefined) return ', python3 in a temporary folder';
    return this.settings.env[endpoint.keyVariable] ? '' : `, not configured: set ${endpoint.keyVariable}`;
  }

  private limits(): SubprocessLimits {
    return { timeoutMs: this.settings.timeoutMs, maxOutputBytes: this.settings.maxOutputBytes };
  }
}

interface SearchEndpoint {
  keyVariable: string;
  baseUrlVariable: string;
  defaultBaseUrl: string;
  url(base: string, query: string, key: string): string;
  headers(key: string): Record<string, string>;
  /** Keeps what the model needs, as Meta's llama-stack tools do. */
  clean(query: string, body: unknown): unknown;
}

const SEARCH_ENDPOINTS: Record<string, SearchEndpoint> = {
  [BRAVE_SEARCH]: {
    keyVariable: 'BRAVE_API_KEY',
    baseUrlVariable: 'BRAVE_SEARCH_BASE_URL',
    defaultBaseUrl: 'https://api.search.brave.com',
    url: (base, query) => `${base.replace(/\/$/, '')}/res/v1/web/search?${new URLSearchParams({ q: query })}`,
    headers: (key) => ({ 'X-Subscription-Token': key, Accept: 'application/json' }),
    clean: (query, body) => {
      const results = ((body as { web?: { results?: unknown[] } }).web?.results ?? []) as Array<Record<string, unknown>>;
      return { query, top_k: results.slice(0, 3).map(({ title, url, description }) => ({ title, url, description })) };
    },
  },
  [WOLFRAM_ALPHA]: {
    keyVariable: 'WOLFRAM_ALPHA_APP_ID',
    baseUrlVariable: 'WOLFRAM_ALPHA_BASE_URL',
    defaultBaseUrl: 'https://api.wolframalpha.com',
    url: (base, query, key) => `${base.replace(/\/$/, '')}/v2/query?${new URLSearchParams({ input: query, appid: key, format: 'plaintext', output: 'json' })}`,
    headers: () => ({ Accept: 'application/json' }),
    clean: (_query, body) => {
      const result = ((body as { queryresult?: Record<string, unknown> }).queryresult ?? {}) as { success?: unknown; pods?: Array<Record<string, unknown>> };
      const pods = (result.pods ?? []).map((pod) => ({
        title: pod.title,
        subpods: ((pod.subpods ?? []) as Array<Record<string, unknown>>).map((subpod) => ({ plaintext: subpod.plaintext })),
      }));
      return { queryresult: { success: result.success, pods } };
    },
  },
};

function failure(message: string): ToolOutcome {
  return { ok: false, content: `error: ${message}` };
}

function capText(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return text;
  return `${bytes.subarray(0, maxBytes).toString('utf8')}\n[output cut at ${maxBytes} bytes]`;
}
