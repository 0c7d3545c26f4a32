"""The export tree and the export-all run that fills it (`python -m exporters.export_all`).

layout: where releases, cards and stamps lie; stamps: what each export was
made from; plan: releases, checkpoints and one job per model; lock, progress;
workers: model jobs in processes within a memory budget; run: the run and
its table.
"""
from exporters.export_tree.layout import (  # noqa: F401
    TEMP_PREFIXES, card_path, export_path, handle_dir, stamp_path, write_atomically)
from exporters.export_tree.lock import LOCK_NAME  # noqa: F401
from exporters.export_tree.plan import DEFAULT_EXPORTER, ExportAllConfig  # noqa: F401
from exporters.export_tree.run import (  # noqa: F401
    ExportAllResult, Row, format_table, provenance_lines, run)
from exporters.export_tree.stamps import Stamp, read_stamp  # noqa: F401
from exporters.export_tree.workers import interrupt_on_signal  # noqa: F401
