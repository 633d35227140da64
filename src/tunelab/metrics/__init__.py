"""Task metrics: classification, answer text, JSON fields, and scoring prediction files against references."""

# The task metrics an evaluation copies into a run's summary.json (and its model card shows).
SUMMARY_METRICS = ("accuracy", "macro_f1", "exact_match", "rouge_l", "json_validity", "json_f1", "json_exact_match")
