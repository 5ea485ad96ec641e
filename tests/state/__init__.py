"""Tests of forwarder.state: the state machine, the stores, the daemon end to end."""
