/**
 * --endpoint and its companions, shared by the commands that can run on a server instead of a
 * local model (generate, chat, eval, prompt, env): the client, the capability probe, and the
 * local tokenizer folder (--template-from) herd renders prompts and counts tokens with.
 */
import path from 'node:path';
import { Flags } from '@oclif/core';
import type { ChatSourceOptions } from '../chat/loop.js';
import { readGenerationDefaults, type GenerationDefaults } from '../engine/load.js';
import type { SamplingOptions } from '../engine/sampling.js';
import { HerdTokenizer } from '../engine/tokenizer.js';
import { HerdError, HerdUsageError } from '../errors.js';
import { chooseChatMode, describeChatMode, probeEndpoint, type ChatMode, type EndpointCapabilities } from '../remote/capabilities.js';
import { RemoteCompletionsTokenSource, ServerChatMessageSource } from '../remote/sources.js';
import { EndpointClient } from '../remote/client.js';
import { selectChatTemplate } from '../templates/chat-template.js';
import { numberFlag } from './flags.js';

export const endpointFlags = {
  endpoint: Flags.string({ description: 'URL of a server speaking the OpenAI API (herd serve, vLLM, TGI, llama.cpp, Ollama) to run on instead of a local model. See docs/distributed.md.', env: 'HERD_ENDPOINT' }),
  'api-key': Flags.string({ description: 'With --endpoint: the API key, sent as a Bearer token.', env: 'HERD_API_KEY' }),
  'endpoint-model': Flags.string({ description: 'With --endpoint: the served model to use (default: the first /v1/models lists).' }),
  'endpoint-timeout': numberFlag({ description: 'With --endpoint: seconds one request may take (default 600).', min: 0.1 }),
  'template-from': Flags.string({ description: "With --endpoint: a local folder with the model's tokenizer.json and tokenizer_config.json (a Llama 3.1 one for chat's raw mode), so herd renders prompts and counts tokens itself." }),
};

export interface EndpointFlags {
  endpoint?: string;
  'api-key'?: string;
  'endpoint-model'?: string;
  'endpoint-timeout'?: number;
  'template-from'?: string;
  model?: string;
}

/** The tokenizer, chat template and stop ids of --template-from. */
export interface LocalTemplate {
  dir: string;
  tokenizer: HerdTokenizer;
  generation: GenerationDefaults;
}

export interface RemoteTarget {
  client: EndpointClient;
  capabilities: EndpointCapabilities;
  template: LocalTemplate | null;
}

/** Connects to --endpoint and asks what it offers; --model beside it is a usage error. */
export async function connectEndpoint(flags: EndpointFlags & { endpoint: string }, concurrency = 1): Promise<RemoteTarget> {
  if (flags.model !== undefined) throw new HerdUsageError('--model and --endpoint (or HERD_ENDPOINT) conflict: run on a local model or on a server, not both');
  const template = flags['template-from'] === undefined ? null : readTemplate(flags['template-from']);
  const client = new EndpointClient({
    url: flags.endpoint,
    apiKey: flags['api-key'],
    model: flags['endpoint-model'],
    timeoutMs: flags['endpoint-timeout'] === undefined ? undefined : flags['endpoint-timeout'] * 1000,
    concurrency,
  });
  return { client, capabilities: await probeEndpoint(client), template };
}

export function readTemplate(dir: string): LocalTemplate {
  const tokenizer = HerdTokenizer.fromDir(dir);
  const eos = tokenizer.settings.eosToken === null ? undefined : tokenizer.tokenToId(tokenizer.settings.eosToken);
  return { dir, tokenizer, generation: readGenerationDefaults(dir, { eosTokenIds: eos === undefined ? [] : [eos] }) };
}

/** The `endpoint` field of --json output run on a server. */
export function endpointJson(capabilities: EndpointCapabilities): { url: string; model: string } {
  return { url: capabilities.endpoint, model: capabilities.model };
}

/** The chat loop's source on a server: raw completions under herd's template, else the server's chat route. */
export function remoteChatOptions(target: RemoteTarget, sampling: SamplingOptions): { options: ChatSourceOptions; mode: ChatMode } {
  const { client, capabilities, template } = target;
  const mode = chooseChatMode(capabilities, template !== null);
  if (mode === null) throw new HerdError(`${capabilities.endpoint} can chat neither way: ${describeChatMode(capabilities, template !== null)}`);
  const contextLength = capabilities.contextLength ?? LLAMA_31_CONTEXT;
  if (mode === 'raw') {
    selectChatTemplate(template!.tokenizer.settings.chatTemplate, { source: path.join(template!.dir, 'tokenizer_config.json'), hasTools: false });
    const source = new RemoteCompletionsTokenSource(client, capabilities.model, template!.tokenizer, sampling, contextLength);
    return { mode, options: { source, tokenizer: template!.tokenizer, stopTokenIds: template!.generation.eosTokenIds } };
  }
  return { mode, options: { messageSource: new ServerChatMessageSource(client, capabilities.model, sampling, contextLength) } };
}

/** Llama 3.1's context, assumed when the server does not say its own. */
const LLAMA_31_CONTEXT = 131_072;
