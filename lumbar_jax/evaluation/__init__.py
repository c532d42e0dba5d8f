"""Scoring predictions against references: Dice, surface distances, the paper's satisfaction.

``evaluator`` (one ``Evaluator`` for every split and space) takes cases from ``cases`` and
predictions from ``predictors``; ``reports`` writes the tables.
"""
