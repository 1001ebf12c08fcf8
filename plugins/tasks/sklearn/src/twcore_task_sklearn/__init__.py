"""Single-task supervised problems on scikit-learn's bundled datasets (no downloads)."""

from twcore_task_sklearn.diabetes import Diabetes, DiabetesConfig
from twcore_task_sklearn.digits import Digits, DigitsConfig

__all__ = ["Diabetes", "DiabetesConfig", "Digits", "DigitsConfig"]
