"""Training strategies behind one small interface (``base.Method``), the strategies that only change
the prompt (``in_context.InContextStrategy``), their registry, and what needs the registry: loading a
config (``config_loading``) and a run's trained model (``loading``)."""
