"""Abstract contract suites: what every backend of a seam promises; subclass one per backend."""
