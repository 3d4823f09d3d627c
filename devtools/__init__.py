"""Development tooling: ``make run`` (``launcher``) and the embedded NATS and store that it and
the tests start (``devstack``)."""
