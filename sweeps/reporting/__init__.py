"""The views of a sweep's records: tables, Optuna study, TensorBoard, plots, ablation statistics.

Each module turns a list of `sweeps.records.Record` into one artifact; `sweeps.report` renders
them all into a workdir. Nothing here trains or touches device arrays.
"""
