import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { SCHEMAS } from '../cli/json-output.js';
import { hubCacheDir, scanCache, type CachedRepo } from '../hub/cache.js';
import { readableBytes } from '../hub/disk-space.js';
import { renderSectionText, type Cell } from '../memory/table.js';

export default class Models extends HerdCommand {
  static override summary = 'List the models in the Hugging Face cache: revisions, files, size on disk, last used.';

  static override description = `Reads the cache herd shares with Python's huggingface_hub, transformers, vLLM and llama.cpp (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), without any request. Sizes count each blob once however many revisions link to it; "last used" is the newest access time of a model's files, which herd sets each time it runs one. See docs/models.md.
${EXIT_STATUS_HELP}`;

  static override examples = ['<%= config.bin %> models', '<%= config.bin %> models --json', 'HF_HUB_CACHE=/data/hf <%= config.bin %> models'];

  async run(): Promise<void> {
    const { flags } = await this.parse(Models);
    const cacheDir = hubCacheDir();
    const repos = scanCache(cacheDir);
    if (flags.json) {
      this.printJson(SCHEMAS.models, { cache_dir: cacheDir, size_on_disk: totalSize(repos), models: repos.map(repoJson) });
      return;
    }
    if (repos.length === 0) {
      this.log(`no models in the cache (${cacheDir}); herd pull org/name downloads one`);
      return;
    }
    const rows = repos.flatMap((repo) => repo.revisions.map((revision, index): Cell[] => [
      { text: index === 0 ? repo.repo : '', tone: 'strong' },
      { text: `${revision.refs.length > 0 ? `${revision.refs.join(',')} ` : ''}${revision.commit.slice(0, 7)}` },
      { text: String(revision.files.length) },
      { text: readableBytes(revision.size) },
      { text: minute(revision.lastUsed), tone: 'dim' },
    ]));
    this.log(renderSectionText({
      title: `Models in ${cacheDir}`,
      columns: [{ header: 'MODEL', align: 'left' }, { header: 'REVISION', align: 'left' }, { header: 'FILES', align: 'right' }, { header: 'SIZE', align: 'right' }, { header: 'LAST USED', align: 'left' }],
      rows,
      notes: [`${repos.length} model${repos.length === 1 ? '' : 's'}, ${readableBytes(totalSize(repos))} on disk, each blob counted once`],
    }));
  }
}

function repoJson(repo: CachedRepo) {
  return {
    repo: repo.repo,
    path: repo.path,
    size_on_disk: repo.sizeOnDisk,
    file_count: repo.fileCount,
    last_used: repo.lastUsed.toISOString(),
    revisions: repo.revisions.map((revision) => ({
      commit: revision.commit,
      refs: revision.refs,
      path: revision.path,
      files: revision.files.map((file) => file.path),
      size: revision.size,
      last_used: revision.lastUsed.toISOString(),
    })),
  };
}

function totalSize(repos: readonly CachedRepo[]): number {
  return repos.reduce((total, repo) => total + repo.sizeOnDisk, 0);
}

/** "2026-12-02 05:40 UTC": to the minute, in one time zone whatever the machine's. */
function minute(date: Date): string {
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}
