"""Fold a run's trained artifact into its base and save a standalone transformers model.

The merged model is a whole folder: it is saved into a staging folder beside ``output`` and renamed
into place (not written file by file through ``tunelab.atomic``), so an interrupted merge never leaves
a half model where a finished one is expected.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tunelab.atomic import write_json_atomic
from tunelab.errors import UserError
from tunelab.models.portable import make_portable
from tunelab.run_files import MERGE_RECORD_FILE, is_run_folder, read_run_config, training_record

# what the merged folder keeps of the run's summary: what generation and a reader of the folder need
MERGED_SUMMARY_KEYS = ("model", "task", "data_format", "labels", "precision", "steps", "train_loss", "eval_loss")


def merge_run(run_dir: str | Path, output: str | Path, overwrite: bool = False) -> Path:
    """Write ``output``, loadable with ``AutoModelForCausalLM.from_pretrained(output)``."""
    import torch

    from tunelab.methods.base import Method
    from tunelab.methods.loading import load_causal_lm
    from tunelab.methods.registry import get_method
    from tunelab.models.loading import load_tokenizer

    run_dir, output = Path(run_dir), Path(output).expanduser().absolute()
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file; give a folder")
    if output == run_dir.absolute() or output in run_dir.absolute().parents:
        raise UserError(f"--output {output} would hold the run being merged; choose another folder")
    if not is_run_folder(run_dir):
        raise UserError(f"{run_dir} is not a finished tunelab run (no config.yaml and summary.json)")
    method = get_method(read_run_config(run_dir)["method"]["name"])
    if not isinstance(method, Method) or not method.can_merge:
        raise UserError(
            f"method '{method.name}' cannot be merged into the base model; "
            f"load the run folder {run_dir} directly instead"
        )
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise UserError(f"{output} is not empty; pass --overwrite to replace it")
    model = load_causal_lm(str(run_dir), dtype=torch.float32, merge_adapters=True)
    tokenizer = load_tokenizer(str(run_dir))
    staging = output.with_name(f".{output.name}.merging")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    make_portable(staging)  # transformers 4 reads it too
    summary = training_record(run_dir)
    record = {"merged_from": str(run_dir.absolute()), "method": method.name}
    record.update({key: summary[key] for key in MERGED_SUMMARY_KEYS if key in summary})
    write_json_atomic(staging / MERGE_RECORD_FILE, record)
    if output.exists():
        shutil.rmtree(output)
    staging.replace(output)
    return output
