"""Sub-commands of the ``agm`` CLI beyond demo/train/sample/eval.

Each module here defines ``register(subparsers)``, which adds its sub-command(s) to the parser;
:func:`agm.cli.build_parser` discovers the modules automatically.
"""
