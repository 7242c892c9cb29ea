"""Old home of the last steps of a run, now in :mod:`scalevae.pipeline` (the recommendation
stored with the result, the report) and :mod:`scalevae.store` (writing it); kept so that
``scalevae.saving`` imports keep working."""

from .pipeline import (flag_epoch_cap, recommendation, recommended_scales,  # noqa: F401
                       write_report_timed)

__all__ = ["flag_epoch_cap", "recommendation", "recommended_scales", "write_report_timed"]
