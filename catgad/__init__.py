"""catgad: a CQRS / event-sourcing appliance configured by one YAML file."""

from catgad.errors import Rejected

__version__ = "0.1.0"
__all__ = ["Rejected", "__version__"]
