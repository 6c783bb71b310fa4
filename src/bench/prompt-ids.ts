/**
 * The prompt every engine of `herd bench` prefills: ids spread over the vocabulary (which ids
 * they are does not change the work), the same in herd and in llama.cpp's child process.
 */
export function benchPromptIds(length: number, vocabSize: number): Int32Array {
  return Int32Array.from({ length }, (_, i) => (i * 7919 + 17) % vocabSize);
}
