/**
 * The backends started in this process, so a command can end their threads when it ends. Held
 * weakly: a test or a long-lived process that loads many models keeps no weights alive through
 * this list. (No imports: the command base class loads this for every command.)
 */
interface Closable {
  close(): Promise<void>;
}

const started = new Set<WeakRef<Closable>>();

/** Records a started backend's ops and returns them. */
export function keepOpen<T extends Closable>(ops: T): T {
  started.add(new WeakRef(ops));
  return ops;
}

/** Closes every backend started so far that is still alive (their worker and native threads end). */
export async function closeStartedBackends(): Promise<void> {
  const alive = [...started].flatMap((ref) => ref.deref() ?? []);
  started.clear();
  await Promise.all(alive.map((ops) => ops.close()));
}
