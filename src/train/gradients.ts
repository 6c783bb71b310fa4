import * as tf from '@tensorflow/tfjs-core';

/**
 * Gradients of the tfjs kernels the Llama forward pass and the training loss use.
 *
 * tfjs-core's Node bundle registers no gradients (the union package @tensorflow/tfjs does, and
 * tfjs-core's own dist/register_all_gradients.js uses extensionless imports Node's ESM loader
 * cannot resolve), so herd registers these, following tfjs-core's definitions, for any kernel
 * that has none yet. test/finetune-lora.test.ts checks them against finite differences.
 */

type Saved = tf.Tensor[];
type Attrs = Record<string, unknown>;
type GradFunc = (dy: tf.Tensor, saved: Saved, attrs: Attrs) => Record<string, () => tf.Tensor> | Array<() => tf.Tensor>;

interface GradientDefinition {
  kernelName: string;
  inputsToSave?: string[];
  outputsToSave?: boolean[];
  saveAllInputs?: boolean;
  gradFunc: GradFunc;
}

/** dy of a broadcasting binary op, summed back to an input's shape. */
function unbroadcast(dy: tf.Tensor, shape: number[], outShape: number[]): tf.Tensor {
  const axes = tf.backend_util.getReductionAxes(shape, outShape);
  return tf.reshape(axes.length > 0 ? tf.sum(dy, axes) : dy, shape);
}

function broadcastShape(a: tf.Tensor, b: tf.Tensor): number[] {
  return tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
}

/** dy reshaped so it broadcasts against x again after a reduction over `axes` without keepDims. */
function expandReduced(dy: tf.Tensor, x: tf.Tensor, axis: unknown): tf.Tensor {
  const axes = tf.util.parseAxisParam(axis as number | number[], x.shape);
  const shape = x.shape.slice();
  axes.forEach((a) => (shape[a] = 1));
  return tf.reshape(dy, shape);
}

const passThrough: GradFunc = (dy) => ({ x: () => dy.clone() });

const DEFINITIONS: GradientDefinition[] = [
  {
    kernelName: 'Add',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => ({ a: () => unbroadcast(dy, a!.shape, broadcastShape(a!, b!)), b: () => unbroadcast(dy, b!.shape, broadcastShape(a!, b!)) }),
  },
  {
    kernelName: 'Sub',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => ({ a: () => unbroadcast(dy, a!.shape, broadcastShape(a!, b!)), b: () => tf.neg(unbroadcast(dy, b!.shape, broadcastShape(a!, b!))) }),
  },
  {
    kernelName: 'Multiply',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => ({
      a: () => unbroadcast(tf.mul(dy, b!), a!.shape, broadcastShape(a!, b!)),
      b: () => unbroadcast(tf.mul(dy, a!), b!.shape, broadcastShape(a!, b!)),
    }),
  },
  {
    kernelName: 'RealDiv',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => ({
      a: () => unbroadcast(tf.div(dy, b!), a!.shape, broadcastShape(a!, b!)),
      b: () => unbroadcast(tf.neg(tf.div(tf.mul(dy, a!), tf.square(b!))), b!.shape, broadcastShape(a!, b!)),
    }),
  },
  {
    kernelName: 'AddN',
    saveAllInputs: true,
    gradFunc: (dy, saved) => saved.map(() => () => dy.clone()),
  },
  {
    kernelName: 'BatchMatMul',
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b], attrs) => {
      const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
      if (!transposeA && !transposeB) return { a: () => tf.matMul(dy, b!, false, true), b: () => tf.matMul(a!, dy, true, false) };
      if (!transposeA && transposeB) return { a: () => tf.matMul(dy, b!, false, false), b: () => tf.matMul(dy, a!, true, false) };
      if (transposeA && !transposeB) return { a: () => tf.matMul(b!, dy, false, true), b: () => tf.matMul(a!, dy, false, false) };
      return { a: () => tf.matMul(b!, dy, true, true), b: () => tf.matMul(dy, a!, true, true) };
    },
  },
  {
    kernelName: 'Sum',
    inputsToSave: ['x'],
    gradFunc: (dy, [x], attrs) => ({ x: () => tf.mul(expandReduced(dy, x!, attrs.axis), tf.ones(x!.shape)) }),
  },
  {
    kernelName: 'Mean',
    inputsToSave: ['x'],
    gradFunc: (dy, [x], attrs) => {
      const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x!.shape);
      const count = axes.reduce((n, a) => n * x!.shape[a]!, 1);
      return { x: () => tf.div(tf.mul(expandReduced(dy, x!, attrs.axis), tf.ones(x!.shape)), count) };
    },
  },
  {
    // Flows to every position equal to the maximum, as tfjs does.
    kernelName: 'Max',
    inputsToSave: ['x'],
    outputsToSave: [true],
    gradFunc: (dy, [x, y], attrs) => ({
      x: () => tf.mul(expandReduced(dy, x!, attrs.reductionIndices), tf.cast(tf.equal(x!, expandReduced(y!, x!, attrs.reductionIndices)), 'float32')),
    }),
  },
  { kernelName: 'Square', inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.mul(dy, tf.mul(x!, 2)) }) },
  { kernelName: 'Rsqrt', inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.neg(tf.div(dy, tf.mul(tf.pow(x!, 1.5), 2))) }) },
  { kernelName: 'Exp', outputsToSave: [true], gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy, y!) }) },
  { kernelName: 'Log', inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.div(dy, x!) }) },
  { kernelName: 'Neg', gradFunc: (dy) => ({ x: () => tf.neg(dy) }) },
  { kernelName: 'Sigmoid', outputsToSave: [true], gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy, tf.mul(y!, tf.sub(1, y!))) }) },
  {
    kernelName: 'Softmax',
    outputsToSave: [true],
    gradFunc: (dy, [y], attrs) => {
      const dyTimesY = tf.mul(dy, y!);
      return { logits: () => tf.sub(dyTimesY, tf.mul(tf.sum(dyTimesY, [attrs.dim as number], true), y!)) };
    },
  },
  { kernelName: 'Reshape', inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.reshape(dy, x!.shape) }) },
  { kernelName: 'Identity', gradFunc: passThrough },
  { kernelName: 'Cast', gradFunc: passThrough },
  {
    kernelName: 'Transpose',
    gradFunc: (dy, _saved, attrs) => ({ x: () => tf.transpose(dy, tf.backend_util.getUndoAxesPermutation(attrs.perm as number[])) }),
  },
  {
    kernelName: 'Slice',
    inputsToSave: ['x'],
    gradFunc: (dy, [x], attrs) => {
      const [begin, size] = tf.slice_util.parseSliceParams(x!, attrs.begin as number[], attrs.size as number[]);
      const paddings = x!.shape.map((length, i) => [begin[i]!, length - begin[i]! - size[i]!] as [number, number]);
      return { x: () => tf.pad(dy, paddings) };
    },
  },
  {
    kernelName: 'Concat',
    saveAllInputs: true,
    gradFunc: (dy, saved, attrs) => {
      const axis = tf.util.parseAxisParam(attrs.axis as number, saved[0]!.shape)[0]!;
      return tf.split(dy, saved.map((t) => t.shape[axis]!), axis).map((part) => () => part);
    },
  },
  {
    // Rows gathered on axis 0 (the loss picks rows and flat entries this way). scatterND sums
    // repeated indices; tfjs' own unsortedSegmentSum loops once per row of x on the cpu backend,
    // which for a flat [positions × vocab] table never finishes.
    kernelName: 'GatherV2',
    inputsToSave: ['x', 'indices'],
    gradFunc: (dy, [x, indices], attrs) => {
      if ((attrs.axis as number) !== 0 || ((attrs.batchDims as number) ?? 0) !== 0) throw new Error('herd registers GatherV2 gradients for axis 0 only');
      const rows = tf.reshape(indices!, [indices!.size, 1]);
      return {
        x: () => tf.scatterND(rows, tf.reshape(dy, [indices!.size, ...x!.shape.slice(1)]), x!.shape),
        indices: () => indices!.clone(),
      };
    },
  },
];

let registered = false;

/** Registers the gradients above for kernels that have none (idempotent). */
export function registerTrainingGradients(): void {
  if (registered) return;
  for (const definition of DEFINITIONS) {
    if (tf.getGradient(definition.kernelName) === undefined) tf.registerGradient(definition as unknown as tf.GradConfig);
  }
  registered = true;
}
