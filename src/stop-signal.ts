/**
 * How a long job (quantize, eval, finetune) learns that Ctrl-C was pressed: it calls
 * `stopRequested` between two of its steps. A signal handler only runs when JavaScript yields to
 * the event loop, so this yields once before it asks.
 */
export type ShouldStop = () => boolean;

export async function stopRequested(shouldStop: ShouldStop | undefined): Promise<boolean> {
  if (!shouldStop) return false;
  await new Promise((resolve) => setImmediate(resolve));
  return shouldStop();
}
