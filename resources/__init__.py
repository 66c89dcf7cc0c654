"""Runtime resources of dicomdesk (desktop entry, icons), read with importlib.resources.

This folder is installed as the package ``dicomdesk.resources`` (see pyproject.toml); the
``__init__`` makes it a regular package so editable installs can map it too.
"""
