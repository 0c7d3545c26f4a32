"""The export run of one model: checkpoint → reference → format writers → verified releases."""
from exporters.pipeline.model_export import (  # noqa: F401
    ExportConfig, ExportResult, ModelExportConfig, ReleaseOutcome, ReleaseTarget, error_text,
    export, export_model)
