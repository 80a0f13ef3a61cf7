"""The commands beside ``fit``/``validate``/``test`` (LLaVA's ``llava/serve``): prediction output, descriptions,
the correlation graph's export, the module ablation and the whole pretraining recipe; ``faceinsight.cli`` lists
them all."""
