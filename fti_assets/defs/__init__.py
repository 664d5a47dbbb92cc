"""Dagster definitions, one folder per FTI stage."""

import warnings

from dagster._utils.warnings import BetaWarning, PreviewWarning

# Single-run backfills and nonexistent-partition mappings are beta APIs we rely on on purpose.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
