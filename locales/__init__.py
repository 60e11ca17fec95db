"""Message catalogs: ``<lang>/<domain>.yaml``."""
