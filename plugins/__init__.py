"""First-party meshd plugins, installed as ``meshd_plugins.<name>``."""
