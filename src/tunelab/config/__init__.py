"""Configuration: the validated schema, YAML loading and dotted ``key=value`` overrides. The method
options are checked against a method catalog handed in (``tunelab.methods.config_loading``)."""
