"""``tunelab eval``: score a model (a finished run, or a base model zero-shot) on a data file.

Writes ``eval.json`` (the metrics and how they were obtained) and ``predictions.jsonl`` (input,
reference, prediction and per-example scores; retrieved chunks and shots where a strategy used
them). A run is evaluated the way it was trained: its prompt wording, its data columns, its
method (few-shot examples and retrieval for the strategies that train nothing). Classification
runs with a trained head are scored from their label probabilities; text data by perplexity.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.atomic import write_json_atomic, write_text_atomic
from tunelab.config.schema import EvalConfig, PromptConfig, TunelabConfig
from tunelab.errors import UserError
from tunelab.metrics import SUMMARY_METRICS
from tunelab.run_files import RUN_CONFIG_FILE, is_run_folder, read_summary

log = logging.getLogger("tunelab")
EVAL_FILE = "eval.json"
PREDICTIONS_FILE = "predictions.jsonl"
GOLD_DOCUMENT = "doc_id"  # an eval column naming the document that holds the answer (RAG recall@k)


# The figures a run's summary.json takes from its eval.json (comparisons rank by them).


def summary_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scalar task metrics of an evaluation (and retrieval recall), plus which metric it scored."""
    kept = {key: metrics[key] for key in SUMMARY_METRICS if key in metrics}
    kept.update({key: value for key, value in metrics.items() if key.startswith("retrieval_recall")})
    return {**kept, "eval_metric": metrics.get("metric")}


@dataclass
class EvalSetup:
    """What is evaluated and how: the model to load, the method and its options, the prompt wording."""

    model: str
    config: TunelabConfig
    labels: list[str] | None = None
    trained_classifier: bool = False  # a classification run with a trained head (not answered in text)
    # the trained model and its tokenizer where they are in memory (eval.generate after training): used
    # instead of loading ``model`` for generation and perplexity. A trained classifier is still loaded:
    # a feature-based run trains a head over stored features, and only its saved run classifies text.
    loaded: tuple[Any, Any] | None = None

    def tokenizer(self) -> Any:
        from tunelab.models.loading import load_tokenizer

        return self.loaded[1] if self.loaded else load_tokenizer(self.model)

    def language_model(self, **options: Any) -> Any:
        """The model to answer with: the one in memory, or loaded from ``model`` (with ``options``)."""
        from tunelab.methods.loading import load_model

        return self.loaded[0] if self.loaded else load_model(self.model, **options)


@dataclass
class EvalReport:
    metrics: dict[str, Any]
    predictions: list[dict[str, Any]]
    output: Path | None
    first_prompt: str | None = None
    warnings: list[str] = field(default_factory=list)


def setup_for(reference: str) -> EvalSetup:
    """A run folder is evaluated as trained; anything else is a base model answering zero-shot."""
    from tunelab.methods.config_loading import load_config
    from tunelab.methods.in_context import InContextStrategy
    from tunelab.methods.registry import get_method

    if not is_run_folder(reference):
        return EvalSetup(reference, load_config(None, [f"model={reference}", "method.name=zeroshot"]))
    config = load_config(Path(reference) / RUN_CONFIG_FILE)
    summary = read_summary(reference)
    method = get_method(config.method.name)
    labels = summary.get("labels")
    if isinstance(method, InContextStrategy):
        return EvalSetup(str(config.model), config, labels)
    return EvalSetup(reference, config, labels, trained_classifier=config.task == "classification")


def _rows(path: Path, config: TunelabConfig) -> tuple[list[dict[str, Any]], str]:
    from tunelab.data.formats import detect_format, rename_columns
    from tunelab.data.loading import load_rows

    dataset = rename_columns(load_rows(path), config.data.columns, path)
    if config.task == "classification" or config.data.format == "classification":
        data_format = "classification"
    elif config.data.format != "auto":
        data_format = config.data.format
    else:
        data_format = detect_format(dataset.column_names, path)
    return [dict(row) for row in dataset], data_format


def _prompted(rows: list[dict[str, Any]], data_format: str, prompt: PromptConfig, labels, path: Path) -> list:
    from tunelab.data.loading import row_location
    from tunelab.prompting.examples import prompted_example

    examples = []
    for index, row in enumerate(rows):
        try:
            examples.append(prompted_example(row, data_format, prompt, labels))
        except UserError as error:
            raise UserError(f"{path} {row_location(path, index)}: {error}") from None
    return examples


def _training_examples(config: TunelabConfig, data_format: str, labels) -> list:
    if config.data.train is None or not Path(config.data.train).is_file():
        return []
    rows, _ = _rows(Path(config.data.train), config)
    return _prompted(rows, data_format, config.prompt, labels, Path(config.data.train))


def evaluate_model(
    reference: str,
    data: Path | str,
    output: Path | str | None = None,
    settings: EvalConfig | None = None,
    show_prompt: bool = False,
    progress: bool = True,
    setup: EvalSetup | None = None,
) -> EvalReport:
    """Score ``reference`` on ``data``; write eval.json and predictions.jsonl into ``output``
    (default: the run folder itself). ``setup`` says what to evaluate where the run folder cannot
    say it yet (an in-context run evaluated before its summary.json, the finished mark, is written)."""
    data = Path(data)
    setup = setup or setup_for(reference)
    settings = settings or setup.config.eval
    if output is None:
        if not is_run_folder(reference):
            raise UserError("--output is needed when evaluating a model that is not a run folder")
        output = Path(reference)
    output = Path(output)
    started = time.perf_counter()
    rows, data_format = _rows(data, setup.config)
    if settings.limit:
        rows = rows[: settings.limit]
    metric = settings.metric
    if metric == "perplexity" or data_format == "text":
        report = _perplexity(setup, data, len(rows))
    elif setup.trained_classifier:
        report = _classify(setup, rows, data)
    else:
        report = _generate(setup, rows, data_format, data, settings, progress)
    report.metrics.update(
        {
            "model": reference,
            "data": str(data.absolute()),
            "method": setup.config.method.name,
            "count": report.metrics.get("count", len(rows)),
            "eval_time_s": round(time.perf_counter() - started, 3),
        }
    )
    if show_prompt and report.first_prompt is not None:
        print(f"--- prompt of the first example ---\n{report.first_prompt}\n--- end of prompt ---")
    output.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output / EVAL_FILE, report.metrics)
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in report.predictions)
    write_text_atomic(output / PREDICTIONS_FILE, lines)
    report.output = output
    return report


def _perplexity(setup: EvalSetup, data: Path, count: int) -> EvalReport:
    from tunelab.config.schema import DataConfig
    from tunelab.data.collate import padding_id
    from tunelab.data.pipeline import prepare_data
    from tunelab.training.evaluation import mean_token_loss, perplexity

    tokenizer = setup.tokenizer()
    config = setup.config.data.model_copy(update={"train": data, "eval": None, "eval_split": None, "packing": False})
    items = prepare_data(DataConfig.model_validate(config.model_dump()), tokenizer, 0, prompt=setup.config.prompt).train
    model = setup.language_model()
    loss = mean_token_loss(model, items, padding_id(tokenizer))
    metrics = {"metric": "perplexity", "mean_token_loss": loss, "perplexity": perplexity(loss), "count": len(items)}
    return EvalReport(metrics, [], None)


def _classify(setup: EvalSetup, rows: list[dict[str, Any]], data: Path) -> EvalReport:
    from tunelab.data.classification import label_text
    from tunelab.inference.predict import predict_labels
    from tunelab.metrics.classification import classification_metrics

    references = [label_text(row.get("label"), data, index) for index, row in enumerate(rows)]
    predictions = predict_labels(setup.model, rows)  # worded as the run was trained
    labels = setup.labels or sorted(set(references))
    metrics = {"metric": "accuracy", **classification_metrics(references, [p.label for p in predictions], labels)}
    records = [
        {
            "input": p.text,
            "reference": ref,
            "prediction": p.label,
            "probabilities": p.probabilities,
            "correct": p.label == ref,
        }
        for p, ref in zip(predictions, references, strict=True)
    ]
    return EvalReport(metrics, records, None)


def _generate(
    setup: EvalSetup, rows: list[dict[str, Any]], data_format: str, data: Path, settings: EvalConfig, progress: bool
) -> EvalReport:
    import torch

    from tunelab.data.chat_template import ensure_chat_template
    from tunelab.evaluation.generation import CHAT_STOP_STRINGS, RAW_STOP_STRINGS, generate_answers
    from tunelab.evaluation.prompts import fit_prompt
    from tunelab.inference.generate import best_device
    from tunelab.methods.in_context import InContextStrategy
    from tunelab.methods.registry import get_method
    from tunelab.metrics.scoring import score_predictions
    from tunelab.models.loading import model_context_length

    config, labels = setup.config, setup.labels
    if data_format == "classification" and labels is None:
        labels = sorted({str(row.get("label")) for row in rows})
    queries = _prompted(rows, data_format, config.prompt, labels, data)
    method = get_method(config.method.name)
    augmentations = (
        method.augment(queries, _training_examples(config, data_format, labels), config.method, config.train.seed)
        if isinstance(method, InContextStrategy)
        else None
    )
    tokenizer = setup.tokenizer()
    chat = data_format != "prompt_completion"
    had_template = getattr(tokenizer, "chat_template", None) is not None
    ensure_chat_template(tokenizer)
    model = setup.loaded[0] if setup.loaded else setup.language_model(dtype=torch.float32).to(best_device())
    context = model_context_length(model)
    budget = context - settings.max_new_tokens if context else None
    prompts, dropped, warnings = [], 0, []
    for index, query in enumerate(queries):
        extra = augmentations[index] if augmentations else None
        chunks = [chunk["text"] for chunk in extra.chunks] if extra else []
        rendered = fit_prompt(tokenizer, query, extra.shots if extra else [], chunks, chat, budget)
        dropped += rendered.dropped
        prompts.append(rendered)
    if dropped:
        warnings.append(f"{dropped} shots or chunks were dropped so that prompts fit the model's context of {context}")
        log.warning(warnings[-1])
    stops = RAW_STOP_STRINGS if not chat else (() if had_template else CHAT_STOP_STRINGS)
    answers = generate_answers(
        model, tokenizer, [p.input_ids for p in prompts], settings.max_new_tokens, settings.batch_size, stops, progress
    )
    references = [query.answer for query in queries]
    metric = settings.metric if settings.metric != "perplexity" else None
    if metric is None and data_format == "classification":
        metric = "accuracy"
    scored = score_predictions(answers, references, metric, labels if metric == "accuracy" else None)
    records = []
    for index, (query, answer) in enumerate(zip(queries, answers, strict=True)):
        record = {"input": query.query_text, "reference": query.answer, "prediction": answer}
        record.update(scored.per_example[index])
        extra = augmentations[index] if augmentations else None
        if extra and extra.shot_ids:
            record["shots"] = extra.shot_ids[len(extra.shot_ids) - prompts[index].shots :]
        if extra and extra.chunks:
            kept = extra.chunks[: prompts[index].chunks]  # trimming drops chunks from the end
            record["retrieved"] = [{k: v for k, v in chunk.items() if k != "text"} for chunk in kept]
        records.append(record)
    metrics = {"metric": scored.metric, **scored.metrics, "max_new_tokens": settings.max_new_tokens}
    if augmentations and any(extra.chunks for extra in augmentations):
        metrics.update(_retrieval_recall(rows, augmentations))
    if dropped:
        metrics["dropped_for_context"] = dropped
    return EvalReport(metrics, records, None, prompts[0].text if prompts else None, warnings)


def _retrieval_recall(rows: list[dict[str, Any]], augmentations: list) -> dict[str, float]:
    """recall@k of the retrieved chunks where the data names the answer-bearing document (``doc_id``)."""
    from tunelab.retrieval.recall import recall_at_k

    known = [
        (row[GOLD_DOCUMENT], extra) for row, extra in zip(rows, augmentations, strict=True) if row.get(GOLD_DOCUMENT)
    ]
    if not known:
        return {}
    k = max(len(extra.chunks) for _, extra in known)
    retrieved = [[chunk["doc_id"] for chunk in extra.chunks] for _, extra in known]
    return {f"retrieval_recall@{k}": recall_at_k(retrieved, [str(gold) for gold, _ in known], k)}
