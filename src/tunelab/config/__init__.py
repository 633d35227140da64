"""Configuration: the validated schema, YAML loading and dotted ``key=value`` overrides."""
