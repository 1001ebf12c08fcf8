"""Single-task supervised problems on scikit-learn's bundled datasets (no downloads)."""

from typing import TYPE_CHECKING

from twcore.contract.lazy import lazy_exports

if TYPE_CHECKING:
    from twcore_task_sklearn.diabetes import Diabetes, DiabetesConfig
    from twcore_task_sklearn.digits import Digits, DigitsConfig

__all__ = ["Diabetes", "DiabetesConfig", "Digits", "DigitsConfig"]

if not TYPE_CHECKING:  # type checkers read the imports above
    __getattr__, __dir__ = lazy_exports(__name__, __file__)
