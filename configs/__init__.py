"""Experiment configs: ``configs/<name>.py`` each defines ``get_config(arg)``."""
