"""Scoring (LLaVA's ``llava/eval``): the metrics every run reports (:mod:`~faceinsight.eval.metrics`), the
majority-class baseline (:mod:`~faceinsight.eval.baseline`) and the scoring of other MLLMs' free-text answers
(:mod:`~faceinsight.eval.text`)."""
