"""Webhook transport: Standard Webhooks signing, the SSRF guard, delivery and the retry schedule."""
