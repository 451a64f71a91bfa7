"""Bundled data files (WordNet nouns, ImageNet-1k classes); read them through `concept.vocabulary`."""
