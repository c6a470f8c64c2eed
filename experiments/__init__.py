"""Paper reproduction: the paper's reported numbers, the report and its plots.

Run from the repository root, e.g. ``python -m experiments.report <sweep dirs...>``.
"""
