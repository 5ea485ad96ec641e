"""The reliability suite: soak, outage, disk, fuzz, limits and secrets (``-m reliability``)."""
