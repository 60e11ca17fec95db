"""The health plugin: probes of the region's own services and host, and the region's verdict.

Probe kinds: ``tcp``, ``http``, ``command``, ``cpu``, ``memory``, ``disk``,
``load``; plugins add more through ``meshd_probe_kinds`` with a
:class:`~meshd_plugins.health.probes.Probe` subclass. See docs/health.md.
"""

from .plugin import HealthPlugin

__all__ = ["HealthPlugin"]
