"""How an example is put to a model: templates, few-shot examples, retrieved context, the final prompt."""
