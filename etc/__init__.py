"""Sample federation files (region map, DR targets, tenants, RTT table, alert routes, a daemon config).

Shipped in the wheel as the package ``meshd_samples`` so that ``meshd demo``
and a plugin author's :class:`meshd.testing.LocalFederation` work from an
installed meshd, with no source tree; read them through :mod:`meshd.samples`.
"""
