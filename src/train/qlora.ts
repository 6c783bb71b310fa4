import * as tf from '@tensorflow/tfjs-core';
import type { HostTensor } from '../formats/safetensors.js';
import { dequantizeNf4Flat, NF4_BLOCK, quantizeNf4Flat } from '../formats/nf4.js';

/**
 * A frozen linear weight of a QLoRA base: the [out, in] weight in bitsandbytes' NF4 (blocks of
 * 64 over the flattened weight, one float32 absmax per block), held in host memory at 4.5 bits a
 * weight. It becomes a float tensor only inside a `linear` call, forward and backward.
 */
export interface Nf4Weight {
  nf4: { packed: Uint8Array; absmax: Float32Array };
  /** [out, in], as nn.Linear stores it. */
  shape: [number, number];
}

export function packNf4Weight(host: HostTensor): Nf4Weight {
  const { packed, absmax } = quantizeNf4Flat(host.data);
  return { nf4: { packed, absmax }, shape: host.shape as [number, number] };
}

export function isNf4Weight(weight: object): weight is Nf4Weight {
  return 'nf4' in weight;
}

export function nf4StoredBytes(weight: Nf4Weight): number {
  return weight.nf4.packed.byteLength + weight.nf4.absmax.byteLength;
}

/** Bytes an NF4 weight of `elements` weights will take (codes two to a byte, a float32 absmax per block), before it is packed. */
export function nf4HeldBytes(elements: number): number {
  return elements / 2 + Math.ceil(elements / NF4_BLOCK) * 4;
}

function dequantized(weight: Nf4Weight): tf.Tensor2D {
  const [out, inFeatures] = weight.shape;
  return tf.tensor2d(dequantizeNf4Flat(weight.nf4.packed, weight.nf4.absmax, out * inFeatures), weight.shape);
}

/**
 * x · Wᵀ with W dequantized for this call only. A custom gradient dequantizes W again for
 * dx = dy · W (the frozen W needs no gradient), so the tape never keeps a float copy of W alive
 * between the forward and the backward pass, as bitsandbytes' Linear4bit does.
 */
export function nf4Linear(x: tf.Tensor2D, weight: Nf4Weight): tf.Tensor2D {
  const product = tf.customGrad((input) => ({
    value: tf.matMul(input as tf.Tensor2D, dequantized(weight), false, true),
    gradFunc: (dy: tf.Tensor) => tf.tidy(() => tf.matMul(dy as tf.Tensor2D, dequantized(weight))),
  }));
  return product(x) as tf.Tensor2D;
}
