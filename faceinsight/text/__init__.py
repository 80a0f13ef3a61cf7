"""Text written from labels and read back from answers: captions (:mod:`~faceinsight.text.captions`), the question
set (:mod:`~faceinsight.text.qa`), the free-text answer parser (:mod:`~faceinsight.text.answers`) and tokenisation
(:mod:`~faceinsight.text.tokens`). Used by training (the caption loss, pretraining), evaluation and the tools."""
