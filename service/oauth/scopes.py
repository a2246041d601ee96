"""The OAuth scopes of the API: the one place they are named."""

WARNINGS_WRITE = "warnings:write"
HOUSEHOLDS_READ = "households:read"
# Declaring that the agency works with a household unlocks its detail: a scope of its own.
INVOLVEMENTS_WRITE = "involvements:write"
NOTIFICATIONS_MANAGE = "notifications:manage"
VISITS_WRITE = "visits:write"
AUDIT_READ = "audit:read"
AUDIT_READ_ALL = "audit:read:all"
# For resource servers (e.g. a gateway) that check other clients' tokens at /oauth/introspect.
TOKENS_INTROSPECT = "tokens:introspect"

# What agency case systems use the API with.
API_SCOPES = (
    WARNINGS_WRITE,
    INVOLVEMENTS_WRITE,
    HOUSEHOLDS_READ,
    NOTIFICATIONS_MANAGE,
    VISITS_WRITE,
    AUDIT_READ,
    AUDIT_READ_ALL,
)
ALL_SCOPES = (*API_SCOPES, TOKENS_INTROSPECT)
