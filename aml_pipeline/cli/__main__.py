"""``python -m aml_pipeline.cli``: the ``aml-pipeline`` command."""

import sys

from aml_pipeline.cli.main import main

sys.exit(main())
