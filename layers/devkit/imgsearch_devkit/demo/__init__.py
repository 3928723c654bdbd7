"""Demo data: synthetic captioned scenes (``scenes``) and the model evaluation on them
(``model_eval``)."""
