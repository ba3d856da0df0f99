"""Speed and device diagnostics: the training/decoding benchmark (benchmark.py), our engines against CTranslate2
(engines.py), the CUDA path in one command (gpu_check.py)."""
