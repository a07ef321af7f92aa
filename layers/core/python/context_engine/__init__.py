"""Context Engine core package.

Lambda-layer layout (``layers/core/python/``): in AWS the layer puts this package on
``sys.path``; in development ``pip install -e .`` does the same through pyproject.toml.
Handlers in ``functions/`` stay thin and call into this package; this package never
imports handlers.
"""

__version__ = "0.1.0"
