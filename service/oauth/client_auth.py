"""Client authentication at the OAuth endpoints: one method per request, either an HTTP Basic
secret or a signed, single-use client assertion (RFC 7523 ``private_key_jwt``)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError, OAuth2Request
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import KeySet, KeySetSerialization
from joserfc.jws import JWSRegistry
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from service.database import db
from service.models.agency import Agency
from service.models.oauth import OAuthClient, UsedAssertion, jwk_weakness
from service.oauth.identity import identify, issuer_url

CLIENT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]
# Signature algorithms of the keys a client may register (jwk_weakness): RSA, EC P-256 and
# P-384, and Ed25519, by its RFC 9864 name and by RFC 8037's "EdDSA", which most libraries
# still send. Named, so joserfc's narrower default set does not silently refuse keys we
# accepted at registration.
ASSERTION_ALGORITHMS = ["RS256", "PS256", "ES256", "ES384", "Ed25519", "EdDSA"]
ASSERTION_TYPE = JWTBearerClientAssertion.CLIENT_ASSERTION_TYPE
MAX_ASSERTION_LIFETIME = 300


def _eddsa_for_ed25519() -> JWSAlgModel:
    # joserfc's own "EdDSA" also takes Ed448 keys and warns on every use (RFC 9864 deprecates
    # the name); this one is its Ed25519 algorithm under the old name: Ed25519 keys only.
    algorithm = copy.copy(JWSRegistry.algorithms["Ed25519"])
    algorithm.name = "EdDSA"
    return algorithm


class _AssertionRegistry(JWSRegistry):
    algorithms = {**JWSRegistry.algorithms, "EdDSA": _eddsa_for_ed25519()}


ASSERTION_REGISTRY = _AssertionRegistry(algorithms=ASSERTION_ALGORITHMS)

CLIENT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,46}\.[0-9a-f]{16}")

QueryClient = Callable[[str], OAuthClient | None]


def query_client(client_id: str) -> OAuthClient | None:
    """Return the active client with ``client_id``; revoked clients and disabled agencies vanish."""
    if not CLIENT_ID_PATTERN.fullmatch(client_id or ""):
        return None  # not one of ours; also keeps NUL bytes and huge strings away from the database
    query = select(OAuthClient).where(OAuthClient.client_id == client_id)
    client: OAuthClient | None = db.session.scalar(query)
    if client is None or not client.is_active:
        return None
    # The audit entry names the client that tried, whether or not it then authenticates.
    identify(client)
    return client


def presented_methods(request: OAuth2Request) -> list[str]:
    """Return the client authentication methods a request carries credentials for."""
    values = request.payload.data  # form and query string: credentials count wherever they are
    scheme = request.headers.get("Authorization", "").partition(" ")[0].lower()
    presented = {
        "client_secret_basic": scheme == "basic",
        "client_secret_post": "client_secret" in values,
        "private_key_jwt": "client_assertion" in values or "client_assertion_type" in values,
    }
    return [method for method, present in presented.items() if present]


def authenticate_client(
    query_client: QueryClient, request: OAuth2Request, methods: list[str], endpoint: str
) -> OAuthClient:
    """Return the client the request authenticates, by the one method it uses.

    RFC 6749 section 2.3: a client uses one authentication method per request; two are refused
    whichever of them would have succeeded, before either is tried.
    """
    presented = presented_methods(request)
    if len(presented) > 1:
        raise InvalidRequestError(
            description="Use one client authentication method per request (RFC 6749 section "
            f"2.3), not {' and '.join(presented)}."
        )
    if not presented:
        raise InvalidClientError(
            status_code=401,
            description="No client credentials: authenticate with HTTP Basic "
            "(client_secret_basic) or a signed client assertion (private_key_jwt).",
        )
    method = presented[0]
    if method not in methods:
        raise InvalidClientError(
            status_code=401,
            description=f"{method} is not accepted: authenticate with {' or '.join(methods)}.",
        )
    client: OAuthClient | None = AUTHENTICATORS[method](query_client, request)
    if client is None or not client.check_endpoint_auth_method(method, endpoint):
        raise InvalidClientError(status_code=REFUSED[method][0], description=REFUSED[method][1])
    request.auth_method = method
    # Read with the secret just checked, in the same row: the token saved later carries it, so
    # a rotation committed in between can still tell it was issued under the old secret.
    request.secret_generation = client.secret_generation
    return client


@dataclass(frozen=True)
class AssertingClient:
    """A client named by an assertion, as its own transaction read it."""

    client_id: str
    agency_id: str
    auth_method: str
    jwks: str | None


# Read on the assertion's own connection, so the request's transaction has not begun yet.
_ASSERTING_CLIENT = (
    select(OAuthClient.client_id, OAuthClient.agency_id, OAuthClient.auth_method, OAuthClient.jwks)
    .join(Agency, Agency.id == OAuthClient.agency_id)
    .where(OAuthClient.revoked_at.is_(None), Agency.disabled_at.is_(None))
)


class PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    """RFC 7523 client authentication with a signed assertion that can be used only once.

    The assertion is verified and its ``jti`` spent in a transaction of its own, committed
    before the request goes on: whatever the request does next, and even if it then fails and
    rolls back, the assertion stays spent.
    """

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self) -> None:
        # The jti is spent explicitly (see spend_assertion), not inside claim verification.
        super().__init__(validate_jti=False, leeway=30)

    def __call__(self, query_client: QueryClient, request: OAuth2Request) -> OAuthClient:
        assertion = request.form.get("client_assertion")
        if request.form.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
            raise InvalidClientError(
                description=f"Send client_assertion_type {ASSERTION_TYPE} and the signed "
                "client_assertion in the form body."
            )
        _, unverified = self.extract_assertion(assertion)
        client_id = unverified.get("sub")
        if not isinstance(client_id, str) or not CLIENT_ID_PATTERN.fullmatch(client_id):
            raise InvalidClientError(description="The assertion needs the client id as its sub.")
        with own_transaction() as connection:
            claims = self._verified_claims(connection, client_id, assertion)
            if not spend_assertion(connection, client_id, claims["jti"], self._spent_until(claims)):
                raise InvalidClientError(
                    description="This assertion was used before: sign a new one, with a fresh "
                    "jti, for each request."
                )
        # Committed: only now does the request's own transaction begin.
        client = query_client(client_id)
        if client is None:
            raise InvalidClientError(description="The client does not exist on this server.")
        return cast(OAuthClient, self.authenticate_client(client))

    def _verified_claims(
        self, connection: Connection, client_id: str, assertion: str
    ) -> dict[str, Any]:
        query = _ASSERTING_CLIENT.where(OAuthClient.client_id == client_id)
        row = connection.execute(query).first()
        if row is None:
            raise InvalidClientError(description="The client does not exist on this server.")
        client = AssertingClient(*row)
        # The audit entry names the client that tried, whether or not it then authenticates.
        identify(client)
        if client.auth_method != self.CLIENT_AUTH_METHOD or not client.jwks:
            raise InvalidClientError(description="The client does not use private_key_jwt.")
        keys = _strong_keys(json.loads(client.jwks))
        try:
            token = jwt.decode(assertion, keys, registry=ASSERTION_REGISTRY)
        except JoseError as error:
            raise InvalidClientError(
                description=f"The assertion does not verify: {error.description}"
            ) from error
        self.verify_claims(token.claims)
        jti = token.claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidClientError(description="The assertion needs a jti, unique per request.")
        return dict(token.claims)

    def verify_claims(self, claims: Any) -> None:
        # A long-lived assertion is a long-lived credential: refuse anything but short ones.
        exp = claims.get("exp")
        if (
            not isinstance(exp, int | float)
            or isinstance(exp, bool)
            or not math.isfinite(exp)
            or exp - time.time() > MAX_ASSERTION_LIFETIME
        ):
            raise InvalidClientError(
                description=f"Assertions need an exp at most {MAX_ASSERTION_LIFETIME} s ahead."
            )
        super().verify_claims(claims)

    def _spent_until(self, claims: dict[str, Any]) -> int:
        # Past its expiry (and the leeway) the assertion is refused anyway: its record can go.
        return int(claims["exp"]) + int(self.leeway)

    def get_audiences(self) -> list[str]:
        base = issuer_url()
        return [base, f"{base}/oauth/token", f"{base}/oauth/introspect", f"{base}/oauth/revoke"]


def _strong_keys(jwks: dict[str, Any]) -> KeySet:
    """Return the client's registered keys, refusing the client if any is too weak (a key
    registered before registration checked strength must not authenticate)."""
    for jwk in jwks.get("keys", []):
        weakness = jwk_weakness(jwk)
        if weakness:
            raise InvalidClientError(
                description=f"The registered key is too weak: {weakness} Register a new key set."
            )
    return KeySet.import_key_set(cast(KeySetSerialization, jwks))


@contextmanager
def own_transaction() -> Iterator[Connection]:
    """Yield a connection of its own whose transaction commits when the block ends normally.

    On SQLite every transaction takes the one write lock at BEGIN (``service.database``): if
    the request's transaction had begun, this one would wait for it until the busy timeout. So
    this must run before the request touches the database, and says so loudly if it does not.
    """
    if db.engine.dialect.name == "sqlite" and db.session().in_transaction():
        raise RuntimeError("an assertion must be spent before the request's transaction begins")
    with db.engine.connect() as connection, connection.begin():
        yield connection


def spend_assertion(connection: Connection, client_id: str, jti: str, until: int) -> bool:
    """Record assertion ``jti`` of ``client_id`` as spent; False if it was spent before.

    The primary key makes a replayed (client, jti) pair fail even under concurrency.
    """
    connection.execute(delete(UsedAssertion).where(UsedAssertion.expires_at < int(time.time())))
    spent = {
        "client_id": client_id,
        "jti_hash": hashlib.sha256(jti.encode()).hexdigest(),
        "expires_at": until,
    }
    try:
        with connection.begin_nested():
            connection.execute(insert(UsedAssertion).values(spent))
    except IntegrityError:
        return False
    return True


AUTHENTICATORS: dict[str, Callable[[QueryClient, OAuth2Request], OAuthClient | None]] = {
    "client_secret_basic": authenticate_client_secret_basic,
    "private_key_jwt": PrivateKeyJWT(),
}
# What a failed method is told: the status (Basic failures answer 401 with a Basic challenge,
# RFC 6749 section 5.2) and the reason in words.
REFUSED = {
    "client_secret_basic": (
        401,
        "The client id and secret do not match an active client that authenticates with "
        "client_secret_basic.",
    ),
    "private_key_jwt": (400, "The client does not authenticate with private_key_jwt."),
}
