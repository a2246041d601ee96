"""private_key_jwt clients register strong public keys only, and each kind accepted works."""

from __future__ import annotations

import json
import time
import uuid
import warnings
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey
from sqlalchemy import update

from service import clients
from service.database import db
from service.errors import InvalidInput
from service.models.oauth import OAuthClient
from tests.factories import create_agency

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _rsa(bits: int) -> Key:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc's own warning on short keys
        return RSAKey.import_key(private)


def _ec(curve: ec.EllipticCurve) -> Key:
    return ECKey.import_key(ec.generate_private_key(curve))


WEAK_KEYS = {
    "rsa-1024": (lambda: _rsa(1024), "2048"),
    "rsa-2047": (lambda: _rsa(2047), "2048"),
    "ec-p521": (lambda: _ec(ec.SECP521R1()), "P-521"),
    "ec-secp256k1": (lambda: _ec(ec.SECP256K1()), "secp256k1"),
    "ed448": (lambda: OKPKey.import_key(ed448.Ed448PrivateKey.generate()), "Ed448"),
    "x25519": (lambda: OKPKey.import_key(x25519.X25519PrivateKey.generate()), "X25519"),
}
STRONG_KEYS = {
    "rsa-2048": (lambda: _rsa(2048), "RS256"),
    "rsa-3072": (lambda: _rsa(3072), "RS256"),
    "ec-p256": (lambda: _ec(ec.SECP256R1()), "ES256"),
    "ec-p384": (lambda: _ec(ec.SECP384R1()), "ES384"),
    "ed25519": (lambda: OKPKey.import_key(ed25519.Ed25519PrivateKey.generate()), "Ed25519"),
}


def _register(app: Flask, jwks: dict[str, Any]) -> str:
    agency = create_agency(app)
    with app.app_context():
        issued = clients.add_client(
            agency, "Case system", ["households:read"], "private_key_jwt", jwks
        )
        db.session.commit()
        return issued.client.client_id


@pytest.mark.parametrize("name", sorted(WEAK_KEYS))
def test_weak_or_unsuitable_keys_are_refused_with_a_reason(app: Flask, name: str) -> None:
    make_key, named = WEAK_KEYS[name]
    jwks = {"keys": [make_key().as_dict(private=False)]}
    with pytest.raises(InvalidInput) as refused:
        _register(app, jwks)
    reason = " ".join(refused.value.errors["jwks"])
    assert named in reason and "\n" not in reason


def test_one_weak_key_among_strong_ones_is_refused(app: Flask) -> None:
    jwks = {"keys": [_ec(ec.SECP256R1()).as_dict(private=False), _rsa(1024).as_dict(private=False)]}
    with pytest.raises(InvalidInput):
        _register(app, jwks)


def test_symmetric_key_is_refused(app: Flask) -> None:
    jwks = {"keys": [{"kty": "oct", "k": OctKey.generate_key(256).as_dict()["k"]}]}
    with pytest.raises(InvalidInput):
        _register(app, jwks)


@pytest.mark.parametrize("name", sorted(STRONG_KEYS))
def test_strong_keys_register_and_get_a_token(app: Flask, client: FlaskClient, name: str) -> None:
    make_key, alg = STRONG_KEYS[name]
    key = make_key()
    key.ensure_kid()
    client_id = _register(app, {"keys": [key.as_dict(private=False)]})
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": "http://localhost/oauth/token",
              "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}  # fmt: skip
    assertion = jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion}  # fmt: skip
    response = client.post("/oauth/token", data=form)
    assert response.status_code == 200, response.get_json()


def test_metadata_advertises_the_algorithms_of_the_accepted_keys(client: FlaskClient) -> None:
    body = client.get("/.well-known/oauth-authorization-server").get_json()
    advertised = set(body["token_endpoint_auth_signing_alg_values_supported"])
    assert {alg for _, alg in STRONG_KEYS.values()} <= advertised
    # EdDSA too (RFC 8037's name, still what most libraries send), for Ed25519 keys only.
    assert "EdDSA" in advertised
    assert not advertised & {"none", "HS256", "Ed448"}


def _assertion_form(client_id: str, key: Key, alg: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": "http://localhost/oauth/token",
              "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc calls EdDSA deprecated
        assertion = jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])
    return {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion}  # fmt: skip


def test_an_ed25519_key_signing_with_the_eddsa_name_gets_a_token(
    app: Flask, client: FlaskClient
) -> None:
    # RFC 8037's "EdDSA" is what most libraries still send for an Ed25519 signature.
    key = OKPKey.import_key(ed25519.Ed25519PrivateKey.generate())
    key.ensure_kid()
    client_id = _register(app, {"keys": [key.as_dict(private=False)]})
    response = client.post("/oauth/token", data=_assertion_form(client_id, key, "EdDSA"))
    assert response.status_code == 200, response.get_json()


def test_eddsa_is_accepted_for_ed25519_keys_only(app: Flask, client: FlaskClient) -> None:
    # An Ed448 key slipped into the stored key set: "EdDSA" must not verify with it.
    key = OKPKey.import_key(ed448.Ed448PrivateKey.generate())
    key.ensure_kid()
    client_id = _register(app, {"keys": [_ec(ec.SECP256R1()).as_dict(private=False)]})
    _store_jwks(app, client_id, {"keys": [key.as_dict(private=False)]})
    response = client.post("/oauth/token", data=_assertion_form(client_id, key, "EdDSA"))
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] == "invalid_client"


def _store_jwks(app: Flask, client_id: str, jwks: dict[str, Any]) -> None:
    """Write a key set straight into the database, past registration's checks (as a key
    registered before those checks existed would be)."""
    with app.app_context():
        db.session.execute(
            update(OAuthClient).where(OAuthClient.client_id == client_id)
            .values(jwks=json.dumps(jwks))
        )  # fmt: skip
        db.session.commit()


@pytest.mark.parametrize("name", ["rsa-1024", "ec-secp256k1"])
def test_a_weak_key_stored_before_the_strength_check_no_longer_authenticates(
    app: Flask, client: FlaskClient, name: str
) -> None:
    make_key, _ = WEAK_KEYS[name]
    weak = make_key()
    weak.ensure_kid()
    client_id = _register(app, {"keys": [_ec(ec.SECP256R1()).as_dict(private=False)]})
    _store_jwks(app, client_id, {"keys": [weak.as_dict(private=False)]})
    alg = "RS256" if name.startswith("rsa") else "ES256K"
    response = client.post("/oauth/token", data=_assertion_form(client_id, weak, alg))
    assert response.status_code in (400, 401)
    body = response.get_json()
    assert body["error"] == "invalid_client"
    assert "registered key is too weak" in body["error_description"]
