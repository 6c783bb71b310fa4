import { Args, Flags } from '@oclif/core';
import { EXIT_STATUS_HELP, HerdCommand } from '../cli/base-command.js';
import { downloadProgress } from '../cli/download-progress.js';
import { InterruptWatch } from '../cli/interrupt.js';
import { SCHEMAS } from '../cli/json-output.js';
import { hubCacheDir } from '../hub/cache.js';
import { pullModel } from '../hub/ensure.js';
import { parseHubNameWithRevision } from '../hub/model-name.js';

export default class Pull extends HerdCommand {
  static override summary = 'Download a model from the Hugging Face Hub into the cache huggingface_hub uses.';

  static override description = `Downloads MODEL (org/name, org/name@revision, org/name:QUANT for a GGUF repository) into the Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), in huggingface_hub's layout, so that Python tools find the same files. Takes what herd loads: a safetensors model's index, shards, configs and tokenizer files (never original/ or *.pth), or a GGUF repository's one quantization with all its parts. --include adds files, --exclude leaves files out (fnmatch patterns, as huggingface_hub's allow and ignore patterns). Files already cached cost nothing; a stopped download resumes where it stopped. Prints the path to load (the snapshot folder, or the .gguf file).
HF_TOKEN (or the token file \`hf auth login\` writes) for gated and private models; HF_ENDPOINT, HF_HUB_OFFLINE, HF_HUB_DISABLE_PROGRESS_BARS, HTTPS_PROXY and NO_PROXY as for huggingface_hub. See docs/models.md.
${EXIT_STATUS_HELP}`;

  static override examples = [
    '<%= config.bin %> pull meta-llama/Llama-3.2-1B-Instruct',
    '<%= config.bin %> pull bartowski/Meta-Llama-3.1-8B-Instruct-GGUF:Q4_K_M',
    "<%= config.bin %> pull meta-llama/Llama-3.1-8B-Instruct --include 'original/*'",
    '<%= config.bin %> pull org/model --revision v1.0 --json',
  ];

  static override args = {
    model: Args.string({ description: 'The model, as org/name, org/name@revision or org/name:QUANT.', required: true, ignoreStdin: true }),
  };

  static override flags = {
    include: Flags.string({ multiple: true, description: 'Also take the files matching this pattern (repeatable), e.g. "original/*".' }),
    exclude: Flags.string({ multiple: true, description: 'Leave out the files matching this pattern (repeatable).' }),
    revision: Flags.string({ description: 'A branch, tag or commit. Default: main.' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Pull);
    const interrupt = new InterruptWatch();
    const pulled = await pullModel(
      parseHubNameWithRevision(args.model, flags.revision),
      { include: flags.include, exclude: flags.exclude, progress: flags.json ? undefined : downloadProgress(), shouldStop: () => interrupt.interrupted },
    ).finally(() => interrupt.dispose());
    if (flags.json) {
      this.printJson(SCHEMAS.pull, {
        cache_dir: hubCacheDir(),
        repo: pulled.repo,
        revision: pulled.revision,
        commit: pulled.commit,
        snapshot: pulled.snapshot,
        model_path: pulled.modelPath,
        missing: pulled.missing,
        from_cache: pulled.fromCache,
        files: pulled.files.map((outcome) => ({ path: outcome.file.path, size: outcome.file.size, blob: outcome.blob, downloaded: outcome.downloaded })),
        downloaded_bytes: pulled.files.reduce((sum, outcome) => sum + (outcome.downloaded ? outcome.file.size : 0), 0),
      });
      return;
    }
    if (pulled.modelPath === null) process.stderr.write(`note: the files taken are not a whole model herd can load (missing ${pulled.missing.join(', ')})\n`);
    this.log(pulled.modelPath ?? pulled.snapshot);
  }
}
