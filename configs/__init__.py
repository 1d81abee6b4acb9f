"""Experiment configs, one per file (`get_config(arg)`), installed as package data
(`ttt_jax.configs`) so `ttt-jax demo` runs from a non-editable install."""
