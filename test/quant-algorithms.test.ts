import { loadModel } from '../src/engine/load.js';
import { searchAwqScales, matmulTransposed, type Activations } from '../src/quant/awq.js';
import { ActivationRecorder, calibrationWindows, DEFAULT_CALIBRATION_FILE, readCalibrationTexts, runCalibration } from '../src/quant/calibration.js';
import { quantizeGptq, DEFAULT_GPTQ } from '../src/quant/gptq.js';
import { dequantizeInt4, quantizeInt4Rtn } from '../src/quant/int4.js';
import { openModelFolder } from '../src/engine/load.js';
import { STORIES } from './fixtures.js';

/** ‖X Wᵀ − X Ŵᵀ‖²: the output error on calibration activations. */
function outputError(x: Activations, w: Float32Array, approx: Float32Array, out: number): number {
  const a = matmulTransposed(x, w, out);
  const b = matmulTransposed(x, approx, out);
  return a.reduce((sum, v, i) => sum + (v - b[i]!) ** 2, 0);
}

// Real activations of stories260K's attention projections (64 inputs, groups of 32), recorded
// beneath the one model definition while it runs the shipped calibration text.
const names = [0, 2, 4].flatMap((layer) => [`model.layers.${layer}.self_attn.q_proj.weight`, `model.layers.${layer}.self_attn.o_proj.weight`]);
const recorder = new ActivationRecorder(new Map(names.map((name) => [name, 64])));
const { checkpoint } = openModelFolder(STORIES);

beforeAll(async () => {
  const loaded = await loadModel(STORIES, { backend: 'cpu', wrapOps: (ops) => recorder.wrap(ops) });
  const windows = calibrationWindows(await readCalibrationTexts(DEFAULT_CALIBRATION_FILE), loaded.tokenizer, 1, { file: DEFAULT_CALIBRATION_FILE, samples: 4, seqLen: 128 });
  runCalibration(loaded, windows);
  loaded.model.dispose();
});

afterAll(() => checkpoint.close());

test('the recorder captures every calibration token of each chosen linear input', () => {
  expect(recorder.activations(names[0]!).rows).toBe(4 * 128);
});

test('GPTQ reduces the output error on calibration activations against round-to-nearest at the same bits and groups', () => {
  for (const name of names) {
    const w = checkpoint.readFloat(name);
    const x = recorder.activations(name);
    for (const symmetric of [true, false]) {
      const rtn = outputError(x, w.data, dequantizeInt4(quantizeInt4Rtn(w, 32, symmetric, 1)), w.shape[0]!);
      for (const actOrder of [false, true]) {
        const gptq = outputError(x, w.data, dequantizeInt4(quantizeGptq(w, x, { ...DEFAULT_GPTQ, groupSize: 32, symmetric, actOrder })), w.shape[0]!);
        expect(gptq).toBeLessThan(rtn * 0.9);
      }
    }
  }
});

test('AWQ scales reduce the output error against round-to-nearest', () => {
  let awqTotal = 0;
  let rtnTotal = 0;
  for (const name of names) {
    const w = checkpoint.readFloat(name);
    const x = recorder.activations(name);
    const rtn = outputError(x, w.data, dequantizeInt4(quantizeInt4Rtn(w, 32, false)), w.shape[0]!);
    const scales = searchAwqScales([w], x, 32);
    const cols = w.shape[1]!;
    const scaled = { ...w, data: w.data.map((v, i) => v * scales[i % cols]!) };
    const approx = dequantizeInt4(quantizeInt4Rtn(scaled, 32, false)).map((v, i) => v / scales[i % cols]!);
    const awq = outputError(x, w.data, approx, w.shape[0]!);
    awqTotal += awq;
    rtnTotal += rtn;
  }
  expect(awqTotal).toBeLessThan(rtnTotal * 0.97);
});
