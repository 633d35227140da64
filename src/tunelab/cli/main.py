"""``tunelab train | generate | merge | methods``: parse, validate, call, report.

Bad input (``UserError``) is printed as one ``error: ...`` line with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import tempfile
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from tunelab.allocator import relaunch_on_tcmalloc
from tunelab.errors import UserError, first_line
from tunelab.training.interrupt import EXIT_INTERRUPTED

EXIT_USAGE = 2
# `tunelab train` options that take a value (the rest of its arguments are the config and overrides)
TRAIN_OPTIONS_WITH_VALUE = ("--processes", "--accelerate-config")
EXIT_BUG = 1
# What `tunelab train` prints at the end, where the run has it.
SUMMARY_FIGURES = ("train_loss", "eval_loss", "accuracy", "macro_f1", "json_f1", "exact_match", "rouge_l")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        raise UserError(f"{self.prog}: {message}")


def _train_epilog() -> str:
    from tunelab.config.loading import describe_config_keys
    from tunelab.methods.registry import available_methods

    return describe_config_keys(available_methods()) + (
        "\n\nexamples:\n  tunelab train examples/tasks-to-json.yaml\n"
        "  tunelab train model=./my-model data.train=train.jsonl method.name=lora method.r=16 train.max_steps=50"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tunelab", description="Adapt a language model to a task, every strategy behind one interface."
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an unexpected error")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser(
        "train",
        help="train a model",
        epilog=_train_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train from a YAML config and/or dotted key=value overrides.",
    )
    train.add_argument("config", nargs="?", help="YAML config file (optional)")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. method.r=16 train.max_steps=50")
    train.add_argument("--overwrite", action="store_true", help="replace whatever output_dir holds")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="train data-parallel in N processes (torchrun; CPU processes talk over gloo)",
    )
    train.add_argument(
        "--accelerate-config",
        metavar="FILE",
        help="launch through `accelerate launch --config_file FILE` (FSDP, DeepSpeed ZeRO, GPU layout)",
    )

    generate = commands.add_parser("generate", help="generate text from a model or run folder")
    generate.add_argument("model", help="run folder, local model folder or hub id")
    source = generate.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="the prompt text")
    source.add_argument("--messages", help="JSON file with a list of {role, content} messages")
    generate.add_argument("--max-new-tokens", type=int, default=128)
    generate.add_argument("--temperature", type=float, default=0.0, help="0 means greedy (default)")
    generate.add_argument("--top-p", type=float, default=1.0)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--task", default=None, help="the task, as named in the data (multi-task prompt runs)")
    style = generate.add_mutually_exclusive_group()
    style.add_argument(
        "--chat",
        dest="chat",
        action="store_true",
        default=None,
        help="wrap --prompt as a user turn of the chat template",
    )
    style.add_argument("--raw", dest="chat", action="store_false", help="use --prompt as raw text")

    merge = commands.add_parser("merge", help="merge a run's adapter into a standalone model")
    merge.add_argument("run_dir")
    merge.add_argument("--output", required=True, help="folder for the merged model")
    merge.add_argument("--overwrite", action="store_true")

    pipeline = commands.add_parser("pipeline", help="train stages in sequence, each from the last one's result")
    pipeline.add_argument("pipeline", help="pipeline YAML (output_dir, defaults, stages)")
    pipeline.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. defaults.train.max_steps=50")

    tokenizer = commands.add_parser("tokenizer", help="train a tokenizer")
    tokenizer_commands = tokenizer.add_subparsers(dest="tokenizer_command", required=True, parser_class=_Parser)
    tokenizer_train = tokenizer_commands.add_parser("train", help="train a byte-level BPE or character tokenizer")
    tokenizer_train.add_argument("--data", nargs="+", required=True, help="text files (.txt .md .jsonl .csv ...)")
    tokenizer_train.add_argument("--output", required=True, help="folder AutoTokenizer.from_pretrained loads")
    tokenizer_train.add_argument("--type", choices=("bpe", "char"), default="bpe", help="bpe (default) or char")
    tokenizer_train.add_argument("--vocab-size", type=int, default=None, help="bpe only (default 8000)")
    tokenizer_train.add_argument("--overwrite", action="store_true")

    methods = commands.add_parser("methods", help="list the training methods")
    methods.add_argument("--model", help="also count each method's trainable parameters on this model")
    methods.add_argument(
        "--task",
        choices=("causal_lm", "classification"),
        help="the task to count for (default: classification for an encoder such as BERT, else causal_lm)",
    )
    for module in _command_modules():
        module.register(commands)
    return parser


# Commands that live in modules of their own: each has ``COMMANDS`` (the names it answers),
# ``register(commands)`` (adds its subparsers) and ``run(args) -> int``.
COMMAND_MODULES: tuple[str, ...] = (
    "tunelab.cli.score_command",
    "tunelab.cli.compare_command",
    "tunelab.cli.classify_command",
    "tunelab.cli.quickstart_command",
    "tunelab.cli.eval_command",
    "tunelab.cli.doctor_command",
    "tunelab.cli.serve_command",
)


def _command_modules() -> list[ModuleType]:
    return [importlib.import_module(name) for name in COMMAND_MODULES]


def _parse(parser: argparse.ArgumentParser, arguments: list[str]) -> argparse.Namespace:
    """Parse with overrides allowed after options (``train x.yaml --quiet train.lr=1e-3``)."""
    if arguments[:1] == ["train"] and not {"-h", "--help"} & set(arguments):
        options, positionals = [], []
        rest = iter(arguments[1:])
        for argument in rest:
            if argument in TRAIN_OPTIONS_WITH_VALUE:
                options += [argument, next(rest, "")]
            elif argument.startswith("--"):
                options.append(argument)
            else:
                positionals.append(argument)
        namespace = parser.parse_args(arguments[:1] + options)
        namespace.config, namespace.overrides = (positionals[0], positionals[1:]) if positionals else (None, [])
        return namespace
    return parser.parse_args(arguments)


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="tunelab: %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "urllib3", "datasets", "filelock", "bitsandbytes", "peft", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _show_one_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    print(f"tunelab: warning: {category.__name__}: {message}", file=sys.stderr)


# Deprecations the libraries raise from their own code, which no code of ours can avoid: the
# command hides them (they would end every training run with lines a user can do nothing about),
# as pyproject.toml's filterwarnings does in the test suite; tests/cli/test_warnings.py keeps the
# two lists equal.
UNAVOIDABLE_DEPRECATIONS: tuple[tuple[str, type[Warning]], ...] = (
    ("`is_gradient_checkpointing` is deprecated", FutureWarning),  # read by PEFT 0.21's PeftModel
    ("`torch.jit.script_method` is deprecated", DeprecationWarning),  # torch 2.13's torch.utils.mkldnn
)


def show_deprecations_once() -> None:
    """Deprecations from transformers, PEFT and accelerate surface while they are cheap to fix:
    each is shown once per command, as one line, and never stops the command. The unavoidable ones
    above are not shown.

    Only the console script calls this; the test suite turns the same warnings into errors."""
    warnings.filterwarnings("once", category=FutureWarning)
    warnings.filterwarnings("once", category=DeprecationWarning)
    for message, category in UNAVOIDABLE_DEPRECATIONS:  # filters added later are consulted first
        warnings.filterwarnings("ignore", message=re.escape(message), category=category)
    warnings.showwarning = _show_one_line


def run_command(args: argparse.Namespace) -> int:
    if args.command == "train":
        from tunelab.methods.config_loading import check_training_inputs, load_config

        config_path, overrides = args.config, list(args.overrides)
        if config_path is not None and "=" in config_path and not config_path.endswith((".yaml", ".yml")):
            config_path, overrides = None, [config_path, *overrides]
        config = load_config(config_path, overrides)
        check_training_inputs(config)  # before torch loads: bad paths answer at once
        if args.processes != 1 or args.accelerate_config:
            from tunelab.training.launch import launch

            flags = [flag for flag, given in (("--overwrite", args.overwrite), ("--quiet", args.quiet)) if given]
            positional = [config_path] if config_path is not None else []
            accelerate_config = Path(args.accelerate_config) if args.accelerate_config else None
            return launch([*positional, *overrides, *flags], args.processes, accelerate_config)
        from tunelab.training.recipe import train

        summary = train(config, overwrite=args.overwrite, progress=not args.quiet).summary
        figures = [f"{key} {summary[key]:.4f}" for key in SUMMARY_FIGURES if isinstance(summary.get(key), float)]
        if os.environ.get("RANK", "0") == "0":  # one line per run, not one per process
            print(f"run folder: {config.output_dir}  " + "  ".join(figures))
        return 0
    if args.command == "generate":
        from tunelab.inference.generate import generate_text, read_messages

        messages = read_messages(args.messages) if args.messages else None
        print(
            generate_text(
                args.model,
                prompt=args.prompt,
                messages=messages,
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
                top_p=args.top_p,
                seed=args.seed,
                task=args.task,
                chat=args.chat,
            )
        )
        return 0
    if args.command == "merge":
        from tunelab.inference.merge import merge_run

        print(f"merged model: {merge_run(args.run_dir, args.output, overwrite=args.overwrite)}")
        return 0
    if args.command == "pipeline":
        from tunelab.pipeline.runner import run_pipeline
        from tunelab.pipeline.spec import load_pipeline

        report = run_pipeline(load_pipeline(args.pipeline, args.overrides))
        print(report.table())
        print(f"pipeline folder: {report.output_dir} (pipeline.json)")
        return 0
    if args.command == "tokenizer":
        from tunelab.tokenization.training import train_tokenizer

        trained = train_tokenizer(
            args.data, args.output, kind=args.type, vocab_size=args.vocab_size, overwrite=args.overwrite
        )
        print(
            f"{trained.kind} tokenizer, {trained.vocab_size} tokens, trained on {trained.characters:,} characters "
            f"-> {trained.output}"
        )
        return 0
    if args.command == "methods":
        from tunelab.methods.listing import default_task, format_listing, list_methods

        task = args.task or (default_task(args.model) if args.model else None)
        print(format_listing(list_methods(args.model, task)))
        if args.model:
            print(f"(trainable parameters counted on {args.model} for {task}; --task to choose)")
        return 0
    for module in _command_modules():
        if args.command in module.COMMANDS:
            return int(module.run(args))
    raise UserError(f"unknown command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Bad input: one ``error:`` line, exit 2. Ctrl-C: one line, exit 130. Anything
    else unexpected: one line naming a file with the full traceback, exit 1 (``--debug``: the
    traceback itself)."""
    _configure_logging()
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in arguments or os.environ.get("TUNELAB_DEBUG") == "1"
    if debug:
        os.environ["TUNELAB_DEBUG"] = "1"  # processes this one launches (--processes) debug as well
    arguments = [argument for argument in arguments if argument != "--debug"]
    try:
        args = _parse(build_parser(), arguments)
        return run_command(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as error:
        print(f"tunelab: {error or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except PermissionError as error:  # a data file, output_dir or cache the user cannot read or write
        print(f"error: {error.filename or 'a file'}: permission denied ({error.strerror or error})", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:
        if debug:
            raise
        report = write_crash_report(error)
        print(
            f"error: unexpected {type(error).__name__}: {first_line(error)} (full traceback in {report}; "
            "please report it with that file, or run again with --debug)",
            file=sys.stderr,
        )
        return EXIT_BUG


def write_crash_report(error: BaseException) -> Path:
    """The full traceback of an unexpected error, in a temporary file that outlives the process."""
    handle, name = tempfile.mkstemp(prefix="tunelab-traceback-", suffix=".txt")
    with os.fdopen(handle, "w", encoding="utf-8") as report:
        report.write(f"tunelab {' '.join(sys.argv[1:])}\n\n")
        report.write("".join(traceback.format_exception(error)))
    return Path(name)


def console_main() -> int:
    """The ``tunelab`` command: ``main`` with deprecations shown once each, on tcmalloc where the
    machine has it (tunelab.allocator: the process executes itself again before importing torch)."""
    try:
        relaunch_on_tcmalloc()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    show_deprecations_once()
    return main()


if __name__ == "__main__":
    sys.exit(console_main())
