import type { Hardware } from '../src/memory/hardware.js';
import { planLaunch, VLLM_LLAMA31_TOOL_TEMPLATE, type LaunchRequest } from '../src/memory/launch.js';
import { buildPlan, type PlanPrecision } from '../src/memory/plan.js';
import { DEFAULT_RECIPE_OPTIONS } from '../src/memory/precision.js';
import { presetModel } from '../src/memory/presets.js';
import { DEFAULT_TRAINING_OPTIONS } from '../src/memory/training.js';
import { herd } from './herd-cli.js';

const GIB = 2 ** 30;
const H100: Hardware = { label: 'H100 80GB', devices: 8, bytesPerDevice: 80 * GIB, reserveBytes: GIB };
const CONTEXT_128K = 131072;

function request(preset: string, hardware: Hardware, overrides: Partial<LaunchRequest> = {}): LaunchRequest {
  return { engine: 'vllm', model: presetModel(preset), modelArgument: preset, hardware, context: CONTEXT_128K, kvDtype: 'bf16', gpuMemoryUtilization: 0.9, port: 8000, ...overrides };
}

/** The planner's own fit for a precision on n devices, each giving the engine 90% of its memory. */
function plannerFit(preset: string, precision: PlanPrecision, hardware: Hardware, devices: number, context: number) {
  const plan = buildPlan({
    model: presetModel(preset), precisions: [precision], recipe: DEFAULT_RECIPE_OPTIONS, contexts: [context], batch: 1, kvDtype: 'bf16', trainingMethods: [], training: DEFAULT_TRAINING_OPTIONS,
    hardware: { label: hardware.label, devices, bytesPerDevice: Math.floor(hardware.bytesPerDevice * 0.9), reserveBytes: 0 },
  });
  return plan.inference[0]!.fit!;
}

const flagValue = (command: string[], flag: string) => command[command.indexOf(flag) + 1];

describe('herd memory --launch: serving commands sized by the plan', () => {
  test('405B on 8 × H100: bf16 fits at no context, so Meta\'s FP8 checkpoint on all 8 GPUs at the full 128k context', () => {
    const plan = planLaunch(request('llama-3.1-405b', H100));
    // The planner says: 16-bit weights alone overflow 8 GPUs; FP8 (Meta's recipe) fits on 8 at 128k but not on 4.
    expect(plannerFit('llama-3.1-405b', 'bf16', H100, 8, CONTEXT_128K).maxTokens).toBe(0);
    expect(plannerFit('llama-3.1-405b', 'fp8-mlp', H100, 4, CONTEXT_128K).fits).toBe(false);
    const chosen = plannerFit('llama-3.1-405b', 'fp8-mlp', H100, 8, CONTEXT_128K);
    expect(chosen.fits).toBe(true);

    expect(plan).toEqual(expect.objectContaining({ precision: 'fp8-mlp', devices: 8, maxModelLength: CONTEXT_128K, fullContext: true, perDeviceBytes: chosen.perDeviceBytes }));
    expect(plan.command.slice(0, 3)).toEqual(['vllm', 'serve', 'meta-llama/Llama-3.1-405B-Instruct-FP8']);
    expect(flagValue(plan.command, '--tensor-parallel-size')).toBe('8');
    expect(flagValue(plan.command, '--max-model-len')).toBe(String(CONTEXT_128K));
    expect(flagValue(plan.command, '--gpu-memory-utilization')).toBe('0.9');
    expect(flagValue(plan.command, '--tool-call-parser')).toBe('llama3_json');
    expect(flagValue(plan.command, '--chat-template')).toBe(VLLM_LLAMA31_TOOL_TEMPLATE);
    expect(plan.command).toContain('--enable-auto-tool-choice');
    // A pre-quantized checkpoint needs no --quantization: vLLM reads it from its config.
    expect(plan.command).not.toContain('--quantization');
    expect(plan.chatCommand).toEqual(['herd', 'chat', '--endpoint', 'http://127.0.0.1:8000/v1', '--endpoint-model', 'meta-llama/Llama-3.1-405B-Instruct-FP8', '--template-from', '~/models/Llama-3.1-405B-Instruct']);
  });

  test('a local 405B folder is quantized on the fly: --quantization fp8 (vLLM) and --quantize fp8 (TGI)', () => {
    const vllm = planLaunch(request('llama-3.1-405b', H100, { modelArgument: '/models/Llama-3.1-405B-Instruct' }));
    expect(plannerFit('llama-3.1-405b', 'fp8', H100, 8, CONTEXT_128K).fits).toBe(true);
    expect(vllm).toEqual(expect.objectContaining({ precision: 'fp8', devices: 8, onTheFlyQuantization: 'fp8' }));
    expect(flagValue(vllm.command, '--quantization')).toBe('fp8');
    const tgi = planLaunch(request('llama-3.1-405b', H100, { engine: 'tgi', modelArgument: '/models/Llama-3.1-405B-Instruct' }));
    expect(tgi.command.slice(0, 3)).toEqual(['text-generation-launcher', '--model-id', '/models/Llama-3.1-405B-Instruct']);
    expect(flagValue(tgi.command, '--num-shard')).toBe('8');
    expect(flagValue(tgi.command, '--quantize')).toBe('fp8');
    expect(flagValue(tgi.command, '--max-total-tokens')).toBe(String(CONTEXT_128K));
    expect(flagValue(tgi.command, '--max-input-tokens')).toBe(String(CONTEXT_128K - 1));
  });

  test('70B on 8 × H100 takes the smallest power-of-two count that holds bf16 at 128k: 4', () => {
    expect(plannerFit('llama-3.1-70b', 'bf16', H100, 2, CONTEXT_128K).fits).toBe(false);
    expect(plannerFit('llama-3.1-70b', 'bf16', H100, 4, CONTEXT_128K).fits).toBe(true);
    const plan = planLaunch(request('llama-3.1-70b', H100));
    expect(plan).toEqual(expect.objectContaining({ precision: 'bf16', devices: 4, maxModelLength: CONTEXT_128K, onTheFlyQuantization: null }));
    expect(flagValue(plan.command, '--tensor-parallel-size')).toBe('4');
  });

  test('when no precision holds the wanted context, the longest context the plan allows (whole k) on all devices', () => {
    const l4: Hardware = { label: 'L4 24GB', devices: 1, bytesPerDevice: 24 * GIB, reserveBytes: GIB };
    expect(plannerFit('llama-3.1-8b', 'bf16', l4, 1, CONTEXT_128K).fits).toBe(false);
    expect(plannerFit('llama-3.1-8b', 'fp8', l4, 1, CONTEXT_128K).fits).toBe(false);
    const longest = plannerFit('llama-3.1-8b', 'bf16', l4, 1, CONTEXT_128K).maxTokens;
    const plan = planLaunch(request('llama-3.1-8b', l4, { engine: 'tgi', port: 3000 }));
    expect(plan).toEqual(expect.objectContaining({ precision: 'bf16', devices: 1, fullContext: false, maxModelLength: Math.floor(longest / 1024) * 1024 }));
    expect(plannerFit('llama-3.1-8b', 'bf16', l4, 1, plan.maxModelLength).fits).toBe(true);
    expect(flagValue(plan.command, '--max-total-tokens')).toBe(String(plan.maxModelLength));
  });

  test('a model that fits the hardware at no context is refused with the reason', () => {
    const a100: Hardware = { label: 'A100 40GB', devices: 4, bytesPerDevice: 40 * GIB, reserveBytes: GIB };
    expect(() => planLaunch(request('llama-3.1-405b', a100))).toThrow(
      /^llama-3\.1-405b cannot be served on 4 × A100 40GB at any context: its fp8 weights alone need [\d.]+ GiB per device on 4 device\(s\), and vllm may use 36\.00 GiB of each/,
    );
  });

  test('the command line: text with the commands, --json with the plan, one line and exit 1 when it cannot fit', () => {
    const text = herd(['memory', '--launch', 'vllm', '--model', 'llama-3.1-405b', '--gpu', 'h100', '--gpus', '8']);
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(/^vllm serve meta-llama\/Llama-3\.1-405B-Instruct-FP8 \\\n {2}--tensor-parallel-size 8 \\\n/m);
    expect(text.stdout).toMatch(/^herd chat \\\n {2}--endpoint http:\/\/127\.0\.0\.1:8000\/v1/m);
    const json = herd(['memory', '--launch', 'vllm', '--model', 'llama-3.1-405b', '--gpu', 'h100', '--gpus', '8', '--json']);
    expect(JSON.parse(json.stdout)).toEqual(expect.objectContaining({ schema: 'herd.memory/1', launch: expect.objectContaining({ devices: 8, precision: 'fp8-mlp', maxModelLength: CONTEXT_128K }) }));
    const refused = herd(['memory', '--launch', 'tgi', '--model', 'llama-3.1-405b', '--gpu', 'a100-40gb', '--gpus', '4']);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/^herd: llama-3\.1-405b cannot be served on 4 × A100 40GB at any context: .*\n$/);
  });
});
