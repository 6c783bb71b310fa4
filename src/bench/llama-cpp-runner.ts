/**
 * The child process in which `herd bench --compare llama.cpp` runs llama.cpp, alone, so that the
 * peak RSS it reports is llama.cpp's own and not herd's (src/bench/compare.ts starts it).
 * Arguments: FILE.gguf PROMPT_TOKENS GEN_TOKENS THREADS. Prints one JSON line of figures, or one
 * "herd: …" line on stderr and exits 1.
 */
import { readGgufHeader } from '../formats/gguf.js';
import { HerdError } from '../errors.js';
import { benchPromptIds } from './prompt-ids.js';
import { benchLlamaCpp } from './llama-cpp.js';

async function main(): Promise<void> {
  const [file, promptTokens, genTokens, threads] = process.argv.slice(2);
  if (file === undefined || threads === undefined) throw new HerdError('usage: llama-cpp-runner FILE.gguf PROMPT_TOKENS GEN_TOKENS THREADS');
  // The embedding rows: herd's config reads llama.vocab_size or the tokenizer's length, equal in a Llama file, so both get the same ids.
  const vocabSize = readGgufHeader(file).tensors.get('token_embd.weight')?.dims[1];
  if (vocabSize === undefined) throw new HerdError(`${file} has no token_embd.weight`);
  const figures = await benchLlamaCpp(file, benchPromptIds(Number(promptTokens), vocabSize), Number(genTokens), Number(threads));
  process.stdout.write(`${JSON.stringify({ ...figures, peak_rss_bytes: process.resourceUsage().maxRSS * 1024 })}\n`);
}

main().catch((error: Error) => {
  process.stderr.write(`herd: ${error.message.split('\n')[0]}\n`);
  process.exitCode = 1;
});
