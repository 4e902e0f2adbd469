"""The workflow's stages, one module per rule: each reads its inputs from files, runs the library,
and writes the stage's artifact, records and metrics. Scripts call these; nothing else does.

- :mod:`.train`: ``train_baseline`` (and each tuning candidate);
- :mod:`.prune`, :mod:`.sparsify`, :mod:`.from_scratch`, :mod:`.sensitivity`: the pruning study;
- :mod:`.qat`: quantization-aware training, deployed as an int8 ONNX model.
"""
