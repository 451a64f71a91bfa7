"""A fitted model's folder: its schema (`schema`: the names of what is saved), the conversion
between the model's fitted attributes and the stored state (`state`), and the check of a loaded
state before it is used (`check`). The bytes on disk are `concept.persistence`'s job."""

from concept.model_folder.check import check_fitted_state
from concept.model_folder.schema import SETTINGS
from concept.model_folder.state import from_state, to_state

__all__ = ["SETTINGS", "check_fitted_state", "from_state", "to_state"]
