import { Args, Flags } from '@oclif/core';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { SCHEMAS } from '../cli/json-output.js';
import { hubCacheDir, removeGgufModel, removeModel } from '../hub/cache.js';
import { readableBytes } from '../hub/disk-space.js';
import { parseHubNameWithRevision } from '../hub/model-name.js';

export default class Rm extends HerdCommand {
  static override summary = 'Remove a model from the Hugging Face cache.';

  static override description = `Removes MODEL (org/name) from the cache herd shares with huggingface_hub: with a revision (org/name@REV or --revision REV: a branch, tag, or commit or its first 7 digits), that snapshot, the refs pointing at it and the files no other snapshot uses; without one, every revision of the model. org/name:QUANT removes one GGUF quantization (every part of it) from the snapshot of main (or of the revision given), keeping the others. Other models are never touched, and nothing is asked: the files can be downloaded again. See docs/models.md.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> rm meta-llama/Llama-3.2-1B-Instruct',
    '<%= config.bin %> rm meta-llama/Llama-3.2-1B-Instruct@refs/pr/12',
    '<%= config.bin %> rm org/model --revision 0123abc --json',
    '<%= config.bin %> rm bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q8_0',
  ];

  static override args = {
    model: Args.string({ description: 'The model, as org/name, org/name@revision, or org/name[@revision]:QUANT for one GGUF quantization.', required: true, ignoreStdin: true }),
  };

  static override flags = {
    revision: Flags.string({ description: 'Remove only this revision: a branch, tag or commit (7 digits or more).' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Rm);
    const name = parseHubNameWithRevision(args.model, flags.revision);
    const cacheDir = hubCacheDir();
    const removal = name.quant === undefined ? removeModel(cacheDir, name.repo, name.revision) : removeGgufModel(cacheDir, name.repo, name.revision ?? 'main', name.quant);
    if (flags.json) {
      this.printJson(SCHEMAS.rm, { cache_dir: cacheDir, repo: removal.repo, removed_commits: removal.removedCommits, removed_refs: removal.removedRefs, removed_files: removal.removedFiles, freed_bytes: removal.freedBytes, removed_repo: removal.removedRepo });
      return;
    }
    const what = removal.removedRepo ? removal.repo : removal.removedCommits.length > 0 ? `${removal.repo} revision ${removal.removedCommits.map((commit) => commit.slice(0, 7)).join(', ')}` : `${removal.removedFiles.join(', ')} of ${removal.repo}`;
    this.log(`removed ${what} from ${cacheDir}, freeing ${readableBytes(removal.freedBytes)}`);
  }
}
