/**
 * Models and datasets live side by side on the Hub. herd names a repository by its path there:
 * a model as `org/name`, a dataset as `datasets/org/name` (huggingface.co/datasets/org/name), so
 * the /resolve URLs (`{endpoint}/{repo}/resolve/…`) are right for both as they are, and only the
 * API paths (/api/models/… or /api/datasets/…) and the cache folder prefix (models-- or
 * datasets--) ask which kind a repository is.
 */
export type RepoType = 'model' | 'dataset';

const DATASET_PREFIX = 'datasets/';

/** The repo path of a dataset id (`HuggingFaceH4/ultrafeedback_binarized` → `datasets/HuggingFaceH4/ultrafeedback_binarized`). */
export function datasetRepo(id: string): string {
  return `${DATASET_PREFIX}${id}`;
}

/** The kind of a repository and its id without the kind. */
export function repoKind(repo: string): { type: RepoType; id: string } {
  return repo.startsWith(DATASET_PREFIX) ? { type: 'dataset', id: repo.slice(DATASET_PREFIX.length) } : { type: 'model', id: repo };
}
