"""Every model of ``fti_assets.specs.models.MODELS``, each built by :func:`model_definitions`.

``load_from_defs_folder`` loads this module's ``defs`` (a module holding a ``Definitions`` object
contributes that object alone). Adding a model is adding its ``ModelSpec`` to ``MODELS``: nothing
here or in ``fti_assets/definitions.py`` changes.
"""

import dagster as dg

from fti_assets.defs.models import model_definitions
from fti_assets.specs.models import MODELS

defs = dg.Definitions.merge(*(model_definitions(spec) for spec in MODELS.values()))
