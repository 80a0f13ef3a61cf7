"""The network (LLaVA's ``llava/model``): the encoders E_i, E_s and T0 with the adapters and the LLM
(:mod:`~faceinsight.model.encoders`), the correlation module (:mod:`~faceinsight.model.correlation`, eq. 5-8) and
FaceInsight itself (:mod:`~faceinsight.model.faceinsight`, eq. 1-2)."""
