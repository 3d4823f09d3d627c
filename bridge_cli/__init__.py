"""``bridge``: the operator's and developer's command line for a running bridge (see ``main``)."""
