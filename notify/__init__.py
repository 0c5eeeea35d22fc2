"""Alert notifications that leave the service: webhooks (notify/webhooks.py)."""
