"""Handler scripts (SPEC H1-H5): ``plugins/handlers/*.py``, hot-reloaded."""
