"""Pretraining of the small presets' backbones, the way their real counterparts were pretrained (docs/pretraining.md).

* ``faceinsight pretrain clip`` (:mod:`faceinsight.train.pretrain.clip`): a CLIP (``transformers.CLIPModel``) trained
  with the symmetric contrastive loss on training-split faces and captions written from their labels (FLIP's recipe),
  saved as a ``from_pretrained`` folder that ``image_encoder.pretrained`` and ``text_encoder.pretrained`` load.
* ``faceinsight pretrain seg`` (:mod:`faceinsight.train.pretrain.seg`): the segmentation encoder E_s (the presets' timm
  ViT over one-hot parsing maps) trained on training-split maps by masked map-class prediction (or map-caption pairs),
  saved as ``model.safetensors`` that ``seg_encoder.checkpoint`` loads; scored by a linear probe of the attributes.
* ``faceinsight pretrain lm`` (:mod:`faceinsight.train.pretrain.lm`): a small ``LlamaForCausalLM`` trained on face
  descriptions and question-answer pairs, saved as a folder that ``llm.pretrained`` loads.
"""
