"""The mixing console: parameter table, MixingConsole and the mixing sheet (docs/design.md §4)."""

from diffmst_lite.console.mixer import MixingConsole
from diffmst_lite.console.params import ParamSpec, random_master_params, random_track_params
from diffmst_lite.console.sheet import SheetError, neutral_sheet, read_sheet, sheet_to_params, write_sheet

__all__ = ["MixingConsole", "ParamSpec", "SheetError", "neutral_sheet", "random_master_params", "random_track_params", "read_sheet", "sheet_to_params", "write_sheet"]
