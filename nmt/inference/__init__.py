"""Inference with a trained model: the Translator API (translator.py), CTranslate2 export and engine
(export.py)."""
