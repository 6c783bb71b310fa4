import { Flags } from '@oclif/core';
import { loadModel } from '../backends/load.js';
import type { LoadedModel } from '../engine/load.js';
import { expectGuardKind, loadPromptGuard } from '../guard/guard-model.js';
import { LlamaGuard } from '../guard/llama-guard.js';
import { defaultPromptGuardThreshold, type PromptGuard } from '../guard/prompt-guard.js';
import { GuardShield } from '../guard/shields.js';
import { numberFlag } from './flags.js';

/** --guard and --prompt-guard: the safety shields herd chat (and herd serve) put around the model. See docs/safety.md. */
export const shieldFlags = {
  guard: Flags.string({ description: 'Llama Guard 3 model folder or .gguf: checks each user turn before the model sees it and each reply before it is shown.' }),
  'guard-threshold': numberFlag({ description: 'With --guard: block when P(unsafe) reaches this, instead of on Llama Guard\'s "unsafe" answer.', min: 0, max: 1 }),
  'prompt-guard': Flags.string({ description: 'Prompt Guard folder: scans user input for jailbreaks and every tool result for prompt injections.' }),
  'prompt-guard-threshold': numberFlag({ description: 'With --prompt-guard: block at this score (default 0.9 for Prompt Guard 2, 0.5 for Prompt Guard 1).', min: 0, max: 1 }),
  'guard-backend': Flags.string({ description: 'Compute backend for the guard models (default: chosen as for the main model; Prompt Guard always runs on tfjs).' }),
};

/** Backends that are herd's own kernels rather than tfjs: with them, Prompt Guard activates a tfjs backend of its own. */
const HERD_KERNEL_BACKENDS: readonly string[] = ['kernels', 'native'];

export interface LoadedShield {
  shield: GuardShield;
  dispose(): void;
}

/**
 * Loads the guards the flags name, or returns null when there are none. `main` is the local chat
 * model (null when it runs on a server), whose tfjs backend Prompt Guard shares when it has one.
 */
export async function loadShield(flags: { guard?: string; 'guard-threshold'?: number; 'prompt-guard'?: string; 'prompt-guard-threshold'?: number; 'guard-backend'?: string; threads?: number }, main: LoadedModel | null): Promise<LoadedShield | null> {
  if (flags.guard === undefined && flags['prompt-guard'] === undefined) return null;
  let llamaGuard: LlamaGuard | undefined;
  let promptGuard: PromptGuard | undefined;
  if (flags.guard !== undefined) {
    expectGuardKind(flags.guard, 'llama-guard', '--guard');
    llamaGuard = new LlamaGuard(await loadModel(flags.guard, { backend: flags['guard-backend'], threads: flags.threads }));
  }
  if (flags['prompt-guard'] !== undefined) {
    promptGuard = await loadPromptGuard(flags['prompt-guard'], { backend: flags['guard-backend'], mainModelOnTfjs: main !== null && !HERD_KERNEL_BACKENDS.includes(main.model.backendName) });
  }
  const shield = new GuardShield({
    llamaGuard: llamaGuard && { classifier: llamaGuard, options: { threshold: flags['guard-threshold'] } },
    promptGuard: promptGuard && { classifier: promptGuard, threshold: flags['prompt-guard-threshold'] ?? defaultPromptGuardThreshold(promptGuard.classifier.config.labels.length) },
  });
  return { shield, dispose: () => promptGuard?.dispose() };
}
