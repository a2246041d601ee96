"""Marshmallow schemas of the API and the OpenAPI document built from them."""
