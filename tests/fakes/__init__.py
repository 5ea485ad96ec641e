"""Test doubles for the forwarder's external services."""
