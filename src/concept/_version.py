"""The package version, in a module of its own so that any module can read it without
importing the package (whose `ConceptModel` imports most of them)."""

__version__ = "0.3.0.dev0"
