"""Training (LLaVA's ``llava/train``): the ``LightningModule`` s (:mod:`~faceinsight.train.module`,
:mod:`~faceinsight.train.faceinsight_module`, :mod:`~faceinsight.train.specialist`), their losses (eq. 3-4),
schedule and run report, the feature cache, and the backbones' pretraining stages (:mod:`~faceinsight.train.pretrain`).
"""
