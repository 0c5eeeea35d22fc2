"""The live heart-rate dashboard: HTML pages and JSON endpoints on Serve's HTTP port (HTTP_PORT),
answered by the ingress deployment's `__call__` (see dashboard/README.md)."""
