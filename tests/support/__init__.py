"""Test helpers shared by the unit, integration and e2e suites (importable as tests.support)."""
