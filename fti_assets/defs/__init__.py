"""Dagster definitions, one folder per FTI stage, loaded as a ``dg`` defs folder.

``fti_assets/definitions.py`` lists nothing: it loads every module here the way
``dg.load_from_defs_folder`` does. A module's module-level assets, asset specs, asset checks,
sensors, schedules and jobs (alone or in a list; not in a tuple or a dict) are loaded; a module
holding a ``Definitions`` object contributes that object only (``models/per_spec.py``). So a new
asset or sensor goes at module level in its stage's module, a new stage is a new folder, a new
model is a ``ModelSpec`` in ``fti_assets.specs.models``. An object imported into another module is
the same object, loaded once; two objects with one key fail ``tests/test_definitions.py``.
"""

import warnings

from dagster._utils.warnings import BetaWarning, PreviewWarning

# Single-run backfills and nonexistent-partition mappings are beta APIs we rely on on purpose.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
