"""The production layout in deploy/ agrees with the app it runs.

Images cannot be built or pulled here, so the container files are checked by parsing them: their
commands exist in the CLI, their settings are ones the app reads and pass its production checks,
ports agree from nginx to gunicorn to the Kubernetes Service, limits are the app's, probes hit
real routes, and every container runs unprivileged on a read-only root filesystem. The nginx site
is checked by nginx itself when it is installed (deploy/local/up installs it): `nginx -t`, then
in front of a real upstream. ALERTSHARE_TEST_DEPLOY_LOCAL=1 also brings deploy/local up for real
(half a minute or more, so not on every run).
"""

from __future__ import annotations

import base64
import gc
import http.client
import ipaddress
import json
import os
import re
import runpy
import secrets
import shlex
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from flask.testing import FlaskClient
from gunicorn.config import Config
from pytest_httpserver import HTTPServer
from sqlalchemy import create_engine, text
from werkzeug.exceptions import default_exceptions
from werkzeug.wrappers import Request, Response

from schemas.problem import ProblemSchema
from service import gunicorn_conf
from service.api.problems import PROBLEM_TYPE_BASE, internal_error
from service.api.rate_limits import rate_limit_problems
from service.cli import main
from service.config import DEFAULTS, load_config, production_problems
from service.crypto import generate_keyring, keyring_to_json
from service.keys import load_keys

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SITE = DEPLOY / "nginx" / "alertshare.conf"
K8S = DEPLOY / "k8s"
RENDER_NGINX = DEPLOY / "local" / "render-nginx"
LOCAL_UP = DEPLOY / "local" / "up"
LOCAL_DOWN = DEPLOY / "local" / "down"
# Where the Dockerfile puts deploy/gunicorn.conf.py, and the ports everything agrees on.
IMAGE_GUNICORN_CONF = "/etc/alertshare/gunicorn.conf.py"
API_PORT = 8000
METRICS_PORT = 9464
SECRET_NAMES = re.compile(r"SECRET|PASSWORD|KEYRING_JSON|DATABASE_URL|RATE_LIMIT_STORAGE|REDISCLI")


# --- reading the files ----------------------------------------------------------------------


@dataclass
class Directive:
    """One nginx directive: its name, arguments and, for a block, what is inside."""

    name: str
    args: list[str]
    block: list[Directive] = field(default_factory=list)


_NGINX_TOKEN = re.compile(r"""\s+|#[^\n]*|'([^']*)'|"([^"]*)"|([{};])|([^\s{};'"]+)""")


def parse_nginx(source: str) -> list[Directive]:
    """Parse an nginx configuration into its directives (enough for these files)."""
    root: list[Directive] = []
    stack, words = [root], []
    for match in _NGINX_TOKEN.finditer(source):
        single, double, punctuation, word = match.groups()
        if punctuation == ";":
            stack[-1].append(Directive(words[0], words[1:]))
            words = []
        elif punctuation == "{":
            directive = Directive(words[0], words[1:])
            stack[-1].append(directive)
            stack.append(directive.block)
            words = []
        elif punctuation == "}":
            assert not words, f"unterminated directive {words}"
            stack.pop()
        elif word is not None or single is not None or double is not None:
            words.append(next(part for part in (single, double, word) if part is not None))
    assert len(stack) == 1 and not words, "unbalanced braces"
    return root


def named(block: list[Directive], name: str) -> list[Directive]:
    return [directive for directive in block if directive.name == name]


def only(block: list[Directive], name: str) -> Directive:
    found = named(block, name)
    assert len(found) == 1, f"expected one {name}, found {len(found)}"
    return found[0]


def nginx_size(value: str) -> int:
    units = {"k": 1024, "m": 1024 * 1024}
    return int(value[:-1]) * units[value[-1].lower()] if value[-1].isalpha() else int(value)


def nginx_seconds(value: str) -> float:
    return float(value.removesuffix("s"))


def site() -> list[Directive]:
    return parse_nginx(SITE.read_text())


def server() -> list[Directive]:
    return only(site(), "server").block


def gunicorn_settings() -> tuple[Config, dict[str, Any]]:
    """Load deploy/gunicorn.conf.py as gunicorn does: run it, keep the names that are settings."""
    namespace = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    config = Config()
    for name, value in namespace.items():
        if name in config.settings:
            config.set(name, value)
    return config, namespace


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def app_services() -> dict[str, dict[str, Any]]:
    """The compose services that run the alertshare image."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image", "").startswith("alertshare:")
    }


def k8s_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def k8s(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        doc
        for doc in k8s_documents()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]


def pod_specs() -> dict[str, dict[str, Any]]:
    """Every pod template (Deployments and Jobs), by workload name."""
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for doc in k8s_documents()
        if doc["kind"] in ("Deployment", "Job")
    }


def kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "kustomization.yaml").read_text()))


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file (comments and blank lines skipped, quotes removed)."""
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, stage by stage (continuation lines joined)."""
    stages: list[list[tuple[str, str]]] = []
    source = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    for line in source.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), rest.strip()))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [rest for instruction, rest in stage if instruction == name]


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:?message} and ${VAR:-default}, from ``variables``."""
    return _INTERPOLATION.sub(lambda match: variables[match.group(1)], value)


def strong_values(template: Mapping[str, str]) -> dict[str, str]:
    """The template's values, with each empty one filled as an operator would: a production key
    ring for the key ring, a long random value for anything else."""
    keyring = json.dumps(json.loads(keyring_to_json(generate_keyring(development=False))))
    return {
        key: value or (keyring if key.endswith("KEYRING_JSON") else secrets.token_urlsafe(48))
        for key, value in template.items()
    }


def alertshare_variables_read() -> set[str]:
    """ALERTSHARE_* settings the app reads: its configuration's keys, and the names read
    elsewhere in its source (e.g. the migration's ALERTSHARE_DATABASE_APP_ROLE)."""
    names = {f"ALERTSHARE_{key}" for key in DEFAULTS}
    for path in (ROOT / "service").rglob("*.py"):
        names |= set(re.findall(r"""["'](ALERTSHARE_[A-Z_]+)["']""", path.read_text()))
    return names


# --- gunicorn -------------------------------------------------------------------------------


def test_gunicorn_settings_build_on_the_apps_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    config, namespace = gunicorn_settings()
    # Every hook and setting of service.gunicorn_conf is kept (alertshare serve's, and the
    # metrics' multiprocess hooks), unless this file decides it.
    for name, value in vars(gunicorn_conf).items():
        if name in config.settings:
            assert namespace[name] is value, name
    assert config.worker_class_str == "sync"
    assert config.bind == [f"0.0.0.0:{API_PORT}"]
    assert config.wsgi_app == "service.wsgi:app"
    assert config.workers == 2 * namespace["_cores"]() + 1
    monkeypatch.setenv("WEB_CONCURRENCY", "7")
    assert gunicorn_settings()[0].workers == 7


def test_gunicorn_file_sets_only_real_settings() -> None:
    # gunicorn ignores a misspelt setting in a config file without a word.
    config, namespace = gunicorn_settings()
    own = re.findall(r"^([a-z]\w*) = ", (DEPLOY / "gunicorn.conf.py").read_text(), re.MULTILINE)
    assert own and not set(own) - set(config.settings)


def test_a_worker_leaves_the_loaded_app_out_of_garbage_collections() -> None:
    # gunicorn calls post_worker_init once the worker has loaded the app (deploy/gunicorn.conf.py
    # takes the app's hooks too): what it loaded is frozen, out of every later collection.
    config, _ = gunicorn_settings()
    assert gc.get_freeze_count() == 0
    try:
        config.post_worker_init(None)
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_gunicorn_never_refuses_what_nginx_lets_through() -> None:
    config, _ = gunicorn_settings()
    count, size = only(server(), "large_client_header_buffers").args
    line_limit = nginx_size(size) - 2  # the buffer holds the request line and its CRLF
    assert line_limit <= config.limit_request_line
    assert nginx_size(size) <= config.limit_request_field_size
    # At least 4 bytes a header line ("a:\r\n"), in nginx's buffers at most.
    assert int(count) * nginx_size(size) // 4 <= config.limit_request_fields
    # nginx waits longer than gunicorn lets a request run: the app server decides.
    assert nginx_seconds(only(server(), "proxy_read_timeout").args[0]) > config.timeout


# --- the nginx site -------------------------------------------------------------------------


def test_nginx_body_limit_is_the_apps() -> None:
    limit = nginx_size(only(server(), "client_max_body_size").args[0])
    assert limit == DEFAULTS["MAX_CONTENT_LENGTH"]
    # Whole bodies in memory, read before a sync worker is taken.
    assert nginx_size(only(server(), "client_body_buffer_size").args[0]) >= limit
    assert only(server(), "proxy_request_buffering").args == ["on"]
    assert only(server(), "proxy_buffering").args == ["on"]
    assert f"{limit} bytes" in problem_bodies()[413]["detail"]


def test_nginx_terminates_tls_and_forwards_the_client() -> None:
    block = server()
    assert set(only(block, "ssl_protocols").args) <= {"TLSv1.2", "TLSv1.3"}
    headers = {d.args[0]: d.args[1:] for d in named(block, "add_header")}
    hsts = headers["Strict-Transport-Security"]
    assert int(re.search(r"max-age=(\d+)", hsts[0]).group(1)) >= 31536000  # type: ignore[union-attr]
    assert hsts[-1] == "always"  # on nginx's own answers too
    forwarded = {d.args[0]: d.args[1] for d in named(block, "proxy_set_header")}
    # ALERTSHARE_TRUSTED_PROXIES=1 takes the last X-Forwarded-For address: the one nginx adds.
    assert forwarded["X-Forwarded-For"] == "$proxy_add_x_forwarded_for"
    assert forwarded["X-Forwarded-Proto"] == "$scheme"
    assert forwarded["X-Forwarded-Port"] == forwarded["X-Forwarded-Prefix"] == ""


def test_metrics_are_not_routed_through_nginx() -> None:
    locations = {tuple(d.args): d.block for d in named(server(), "location")}
    assert only(locations[("^~", "/metrics")], "return").args == ["404"]


def problem_bodies() -> dict[int, dict[str, Any]]:
    """The body nginx returns for each status it answers itself, by status."""
    block = server()
    locations = {d.args[-1]: d.block for d in named(block, "location")}
    bodies = {}
    for directive in named(block, "error_page"):
        *codes, target = directive.args
        location = locations[target]
        assert named(location, "internal"), target
        assert only(location, "default_type").args == ["application/problem+json"]
        status, body = only(location, "return").args
        sample = body.replace("$alertshare_request_id", "0123456789abcdef")
        for code in codes:
            status_sent = int(code[1:]) if code.startswith("=") else int(status)
            bodies[status_sent] = json.loads(sample)
            assert bodies[status_sent]["status"] == int(status)
    return bodies


def test_nginx_answers_its_own_errors_as_the_apps_problem_documents() -> None:
    bodies = problem_bodies()
    assert {400, 404, 408, 413, 414, 431, 500, 502, 503, 504} <= set(bodies)
    for status, body in bodies.items():
        ProblemSchema().load(body)  # the app's own problem shape: nothing more, nothing less
        expected = internal_error() if status == 500 else None
        title = expected.title if expected else default_exceptions[status]().name
        slug = expected.slug if expected else title.lower().replace(" ", "-")
        assert (body["type"], body["title"], body["status"]) == (
            PROBLEM_TYPE_BASE + slug,
            title,
            status,
        )


def test_nginx_upstreams_are_the_compose_app_servers_on_the_gunicorn_port() -> None:
    upstream = only(site(), "upstream")
    servers = [d.args[0] for d in named(upstream.block, "server")]
    hosts = {address.rpartition(":")[0] for address in servers}
    assert hosts == {"app1", "app2"}
    assert {int(address.rpartition(":")[2]) for address in servers} == {API_PORT}
    for host in hosts:
        assert str(API_PORT) in app_services()[host]["expose"]
    (location,) = [d for d in named(server(), "location") if d.args == ["/"]]
    assert only(location.block, "proxy_pass").args == [f"http://{upstream.args[0]}"]


# --- compose --------------------------------------------------------------------------------


def test_compose_has_the_whole_layout() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "app1", "app2", "worker", "nginx"}
    assert services["migrate"]["command"] == ["alertshare", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("app1", "app2", "worker"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert set(services["nginx"]["depends_on"]) == {"app1", "app2"}


def test_compose_containers_are_read_only_and_publish_only_https() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert ("ports" in service) == (name == "nginx"), name
    for name, service in app_services().items():
        assert service["cap_drop"] == ["ALL"], name
    listen = [d.args[0] for d in named(server(), "listen")]
    assert services["nginx"]["ports"] == ["443:8443"] and "8443" in listen


def test_compose_takes_every_secret_from_the_environment() -> None:
    source = (DEPLOY / "compose.yaml").read_text()
    used = set(_INTERPOLATION.findall(source))
    assert used == set(env_file(DEPLOY / "env.example"))
    for name, service in compose()["services"].items():
        environment = service.get("environment", {})
        for key, value in environment.items():
            if SECRET_NAMES.search(key):
                assert "${" in str(value), f"{name}: {key} is written into compose.yaml"


def test_compose_settings_pass_the_production_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = strong_values(env_file(DEPLOY / "env.example"))
    config, _ = gunicorn_settings()
    for name, service in app_services().items():
        environment = {k: interpolate(str(v), variables) for k, v in service["environment"].items()}
        assert production_refusals(environment, config.workers, monkeypatch) == [], name


def production_refusals(
    environment: Mapping[str, str], workers: int, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """What production mode would refuse about these settings, before any database is reached."""
    with monkeypatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("ALERTSHARE_")]:
            patch.delenv(name)
        for name, value in environment.items():
            patch.setenv(name, value)
        config = load_config()
        assert config["ENV"] == "production"
        load_keys(config)  # refuses a missing or development key ring
        return production_problems(config) + rate_limit_problems({**config, "WORKERS": workers})


def test_migrations_revoke_audit_changes_from_the_role_the_app_connects_as() -> None:
    services = compose()["services"]
    app_user = re.search(r"://(\w+):", services["app1"]["environment"]["ALERTSHARE_DATABASE_URL"])
    role = services["migrate"]["environment"]["ALERTSHARE_DATABASE_APP_ROLE"]
    assert app_user and app_user.group(1) == role
    assert f"app_role={role}" in (DEPLOY / "postgres" / "init-app-role.sh").read_text()
    secrets_example = env_file(K8S / "secrets" / "app.env.example")
    assert re.search(f"://{role}:", secrets_example["ALERTSHARE_DATABASE_URL"])
    (job,) = pod_specs()["alertshare-migrate"]["containers"]
    assert {"name": "ALERTSHARE_DATABASE_APP_ROLE", "value": role} in job["env"]


# --- the image ------------------------------------------------------------------------------


def test_image_is_built_in_one_stage_and_runs_unprivileged_in_another() -> None:
    builder, final = dockerfile_stages()
    assert any("pip wheel" in run for run in instructions(builder, "RUN"))
    assert "slim" in instructions(final, "FROM")[0]
    everything = " ".join(rest for _, rest in final)
    assert not re.search(r"apt-get|build-essential|gcc|\.\[|COPY service", everything)
    assert any("--no-index" in run for run in instructions(final, "RUN"))
    (user,) = instructions(final, "USER")
    uid, _, gid = user.partition(":")
    assert int(uid) > 0 and int(gid) > 0
    assert f"deploy/gunicorn.conf.py {IMAGE_GUNICORN_CONF}" in instructions(final, "COPY")
    assert {int(port) for port in instructions(final, "EXPOSE")[0].split()} == {
        API_PORT,
        METRICS_PORT,
    }
    (healthcheck,) = instructions(final, "HEALTHCHECK")
    assert f"http://127.0.0.1:{API_PORT}/healthz" in healthcheck


def image_uid() -> int:
    return int(instructions(dockerfile_stages()[-1], "USER")[0].partition(":")[0])


# --- Kubernetes -----------------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_keeps_secrets_out_of_version_control() -> None:
    resources = set(kustomization()["resources"])
    assert resources == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    for generator in kustomization()["secretGenerator"]:
        (path,) = generator["envs"]
        assert (K8S / f"{path}.example").exists(), path
    assert "*.env" in (K8S / "secrets" / ".gitignore").read_text().split()


def secret_keys() -> dict[str, set[str]]:
    """The keys of each generated Secret, from its example env file."""
    return {
        generator["name"]: set(env_file(K8S / f"{generator['envs'][0]}.example"))
        for generator in kustomization()["secretGenerator"]
    }


def test_pods_run_unprivileged_on_a_read_only_root() -> None:
    assert k8s("Namespace")[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    for name, pod in pod_specs().items():
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True, name
        assert context["runAsUser"] == image_uid(), name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        tmp_volumes = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for spec in pod["containers"]:
            security = spec["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            mounts = {m["mountPath"]: m["name"] for m in spec["volumeMounts"]}
            assert mounts["/tmp"] in tmp_volumes, name


def test_pods_take_secrets_from_secrets() -> None:
    keys = secret_keys()
    for name, pod in pod_specs().items():
        for spec in pod["containers"]:
            for variable in spec["env"]:
                if SECRET_NAMES.search(variable["name"]):
                    reference = variable["valueFrom"]["secretKeyRef"]
                    assert reference["key"] in keys[reference["name"]], (name, variable)
    for config_map in k8s("ConfigMap"):
        assert not [key for key in config_map["data"] if SECRET_NAMES.search(key)]


def container(workload: str) -> dict[str, Any]:
    (only_container,) = pod_specs()[workload]["containers"]
    return dict(only_container)


def container_port(workload: str, name: str) -> int:
    ports = {port["name"]: port["containerPort"] for port in container(workload).get("ports", [])}
    return int(ports[name])


def test_api_probes_ports_and_service_agree() -> None:
    api = container("alertshare-api")
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container_port("alertshare-api", api[probe]["httpGet"]["port"]) == API_PORT
    assert container_port("alertshare-api", "metrics") == METRICS_PORT
    assert container_port("alertshare-worker", "metrics") == METRICS_PORT
    config_map = k8s("ConfigMap", "alertshare-config")[0]["data"]
    assert config_map["ALERTSHARE_METRICS_BIND"].endswith(f":{METRICS_PORT}")
    (service,) = k8s("Service", "alertshare-api")
    (port,) = service["spec"]["ports"]
    assert port["port"] == API_PORT
    assert container_port("alertshare-api", port["targetPort"]) == API_PORT
    labels = k8s("Deployment", "alertshare-api")[0]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (ingress,) = k8s("Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert (backend["name"], backend["port"]["name"]) == ("alertshare-api", port["name"])
    body_size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert nginx_size(body_size) == DEFAULTS["MAX_CONTENT_LENGTH"]


def test_api_sizing_and_shutdown_fit_gunicorn() -> None:
    config, _ = gunicorn_settings()
    api = container("alertshare-api")
    workers = {v["name"]: v.get("value") for v in api["env"]}["WEB_CONCURRENCY"]
    assert int(workers) == 2 * int(api["resources"]["limits"]["cpu"]) + 1
    pre_stop = int(api["lifecycle"]["preStop"]["exec"]["command"][-1])
    grace = pod_specs()["alertshare-api"]["terminationGracePeriodSeconds"]
    assert pre_stop + config.graceful_timeout <= grace
    (budget,) = k8s("PodDisruptionBudget")
    deployment = k8s("Deployment", "alertshare-api")[0]["spec"]
    assert budget["spec"]["selector"] == deployment["selector"]
    assert 0 < budget["spec"]["minAvailable"] < deployment["replicas"]


def test_k8s_settings_pass_the_production_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    config_map = k8s("ConfigMap", "alertshare-config")[0]["data"]
    values = {
        generator["name"]: strong_values(env_file(K8S / f"{generator['envs'][0]}.example"))
        for generator in kustomization()["secretGenerator"]
    }
    for name in pod_specs():
        spec = container(name)
        environment = dict(config_map)
        for variable in spec["env"]:
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            environment[variable["name"]] = (
                values[reference["name"]][reference["key"]] if reference else variable["value"]
            )
        workers = int(environment.get("WEB_CONCURRENCY", 1))
        assert production_refusals(environment, workers, monkeypatch) == [], name


def test_network_policy_denies_by_default_and_allows_each_part_its_own() -> None:
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in k8s("NetworkPolicy")}
    deny = policies.pop("alertshare-default-deny")
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    by_component = {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]: p for p in policies.values()
    }
    assert set(by_component) == {"api", "worker", "migrate"}

    def ports(rules: list[dict[str, Any]]) -> set[Any]:
        return {port["port"] for rule in rules for port in rule.get("ports", [])}

    api, worker, migrate = (by_component[c] for c in ("api", "worker", "migrate"))
    ingress_from = [rule["from"][0]["namespaceSelector"]["matchLabels"] for rule in api["ingress"]]
    assert {"kubernetes.io/metadata.name": "ingress-nginx"} in ingress_from
    assert ports(api["ingress"]) == {"http", "metrics"}
    assert ports(worker["ingress"]) == {"metrics"} and migrate["ingress"] == []
    assert ports(api["egress"]) == {53, 5432, 6379}
    assert ports(worker["egress"]) == {53, 5432, 6379, 443}
    assert ports(migrate["egress"]) == {53, 5432}
    # Named ports are the containers' own.
    for port in ports(api["ingress"]):
        assert container_port("alertshare-api", port)
    for port in ports(worker["ingress"]):
        assert container_port("alertshare-worker", port)


# --- what every file runs and sets ----------------------------------------------------------


def commands() -> list[list[str]]:
    """Every command the layout runs: compose, Kubernetes, the image, and deploy/local/up."""
    found = [list(service["command"]) for service in app_services().values()]
    found += [list(c["command"]) for pod in pod_specs().values() for c in pod["containers"]]
    found.append(json.loads(instructions(dockerfile_stages()[-1], "CMD")[0]))
    up = LOCAL_UP.read_text()
    for invocation in re.findall(r"""(?:bin/alertshare"|\$state/alertshare) ([a-z][^>\n]*)""", up):
        words = shlex.split(invocation.split(" --")[0].replace("\\", ""))
        found.append(["alertshare", *[w for w in words if re.fullmatch(r"[a-z][\w-]*", w)]])
    found.append(
        [
            "gunicorn",
            "--config",
            str(DEPLOY / "gunicorn.conf.py"),
            "--bind",
            "127.0.0.1:8001",
            "--workers",
            "3",
        ]
    )
    return found


def test_every_command_exists() -> None:
    runner = CliRunner()
    seen = set()
    for argv in commands():
        if argv[0] == "alertshare":
            result = runner.invoke(main, [*argv[1:], "--help"])
            assert result.exit_code == 0, (argv, result.output)
            seen.add(" ".join(argv[1:3]))
        else:
            assert argv[0] == "gunicorn", argv
            Config().parser().parse_args(argv[1:])  # exits on an option gunicorn lacks
            path = argv[argv.index("--config") + 1]
            assert path in (IMAGE_GUNICORN_CONF, str(DEPLOY / "gunicorn.conf.py")), argv
    assert {"db upgrade", "worker --checkpoint-dir", "keys init"} <= seen


def test_every_alertshare_variable_is_one_the_app_reads() -> None:
    names: set[str] = set()
    for service in app_services().values():
        names |= set(service["environment"])
    names |= set(env_file(DEPLOY / "env.example"))
    names |= set(k8s("ConfigMap", "alertshare-config")[0]["data"])
    names |= {
        v["name"] for pod in pod_specs().values() for c in pod["containers"] for v in c["env"]
    }
    for keys in secret_keys().values():
        names |= keys
    names |= {
        line.split("=")[0]
        for line in instructions(dockerfile_stages()[-1], "ENV")[0].split()
        if "=" in line
    }
    names |= set(re.findall(r"\bALERTSHARE_[A-Z_]+", LOCAL_UP.read_text()))
    ours = {name for name in names if name.startswith("ALERTSHARE_")}
    local_only = {name for name in ours if name.startswith("ALERTSHARE_LOCAL_")}
    assert ours - local_only - alertshare_variables_read() == set()
    # The rest: gunicorn's (read by deploy/gunicorn.conf.py), Python's and pip's, and compose's
    # own variables for the stores' images and nginx.
    gunicorn = {"WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"}
    python = {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_DISABLE_PIP_VERSION_CHECK"}
    compose_only = {"POSTGRES_PASSWORD", "APP_DB_PASSWORD", "REDIS_PASSWORD", "TLS_DIR"}
    assert names - ours <= gunicorn | python | compose_only
    gunicorn_conf_source = (DEPLOY / "gunicorn.conf.py").read_text()
    assert all(f'"{name}"' in gunicorn_conf_source for name in gunicorn)


def test_probe_paths_are_public_routes(client: FlaskClient) -> None:
    paths = {
        probe["httpGet"]["path"]
        for pod in pod_specs().values()
        for c in pod["containers"]
        for name, probe in c.items()
        if name.endswith("Probe")
    }
    paths |= set(
        re.findall(
            r"127\.0\.0\.1:\d+(/\w+)", instructions(dockerfile_stages()[-1], "HEALTHCHECK")[0]
        )
    )
    paths |= set(re.findall(r"wait_for \"https?://127\.0\.0\.1:\$\w+(/\w+)", LOCAL_UP.read_text()))
    assert paths == {"/healthz", "/readyz"}
    for path in paths:
        assert client.get(path).status_code == 200, path


# --- nginx itself ---------------------------------------------------------------------------


def write_certificate(tls: Path) -> None:
    """A throwaway CA (ca.crt) and a certificate for 127.0.0.1 signed by it (tls.crt, tls.key)."""
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alertshare test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls.mkdir(parents=True, exist_ok=True)
    (tls / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tls / "tls.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tls / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def running(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie waiting for its new parent to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state directory nginx's workers (nobody, when the suite runs as root) can traverse."""
    path = Path(tempfile.mkdtemp(prefix="alertshare-deploy-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


needs_nginx = pytest.mark.skipif(
    shutil.which("nginx") is None, reason="nginx is not installed (deploy/local/up installs it)"
)


def render(state: Path, https: int, app1: int, app2: int) -> Path:
    write_certificate(state / "tls")
    subprocess.run(
        [
            str(RENDER_NGINX),
            str(state),
            f"127.0.0.1:{https}",
            f"127.0.0.1:{app1}",
            f"127.0.0.1:{app2}",
        ],
        check=True,
    )
    return state / "nginx" / "nginx.conf"


@needs_nginx
def test_site_passes_nginx_t(state_dir: Path) -> None:
    conf = render(state_dir, free_port(), free_port(), free_port())
    checked = subprocess.run(
        ["nginx", "-t", "-p", str(conf.parent), "-c", str(conf)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    # Only the addresses, the certificate and the log paths differ from the production file.
    production, rendered = SITE.read_text(), (conf.parent / "alertshare.conf").read_text()
    changed = set(rendered.splitlines()) - set(production.splitlines())
    assert all(re.search(r"server 127|listen 127|/tls/|log/", line) for line in changed), changed


@dataclass
class Edge:
    """nginx running the rendered site, and how to reach it over TLS."""

    port: int
    context: ssl.SSLContext

    def request(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=10
        )
        try:
            connection.request(
                method,
                path,
                body=body,
                headers=dict(headers or {}),
                encode_chunked=body is not None and not isinstance(body, bytes),
            )
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


@pytest.fixture
def edge(state_dir: Path, httpserver: HTTPServer) -> Iterator[Edge]:
    """nginx with the production site in front of a recording upstream (app1) and a server that
    is down (app2)."""
    port = free_port()
    conf = render(state_dir, port, httpserver.port, free_port())
    subprocess.run(["nginx", "-p", str(conf.parent), "-c", str(conf)], check=True)
    pid = int((conf.parent / "nginx.pid").read_text())
    context = ssl.create_default_context(cafile=str(state_dir / "tls" / "ca.crt"))
    try:
        yield Edge(port, context)
    finally:
        os.kill(pid, 15)  # SIGTERM: nginx's fast shutdown
        for _ in range(100):
            if not running(pid):
                break
            time.sleep(0.05)


def echo(request: Request) -> Response:
    """The upstream: what it was sent."""
    seen = {"headers": dict(request.headers), "length": len(request.get_data())}
    return Response(
        json.dumps(seen),
        content_type="application/json",
        headers={"X-Request-Id": "upstream-id", "Cache-Control": "no-store"},
    )


def assert_problem(status: int, headers: Mapping[str, str], body: bytes, expected: int) -> None:
    assert status == expected, body
    assert headers["Content-Type"] == "application/problem+json"
    document = ProblemSchema().load(json.loads(body))
    assert document["status"] == expected
    assert document["request_id"] == headers["X-Request-Id"]
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert headers["Cache-Control"] == "no-store"


@needs_nginx
def test_nginx_forwards_the_real_client_and_one_request_id(
    edge: Edge, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/v1/me").respond_with_handler(echo)
    status, headers, body = edge.request(
        "GET",
        "/api/v1/me",
        headers={
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Port": "1",
            "X-Request-Id": "trace-1",
        },
    )
    assert status == 200
    sent = json.loads(body)["headers"]
    # The app trusts one proxy: it takes the last address, which nginx wrote.
    assert sent["X-Forwarded-For"].split(",")[-1].strip() == "127.0.0.1"
    assert sent["X-Forwarded-Proto"] == "https"
    assert sent["X-Forwarded-Host"] == f"127.0.0.1:{edge.port}"
    assert "X-Forwarded-Port" not in sent
    assert sent["X-Request-Id"] == headers["X-Request-Id"] == "trace-1"
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    # An id the app would not accept is replaced, not passed on.
    status, headers, body = edge.request("GET", "/api/v1/me", headers={"X-Request-Id": 'a"b'})
    assert re.fullmatch(r"[0-9a-f]{32}", json.loads(body)["headers"]["X-Request-Id"])
    assert headers["X-Request-Id"] == json.loads(body)["headers"]["X-Request-Id"]


@needs_nginx
def test_nginx_refuses_oversized_requests_with_problem_documents(
    edge: Edge, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/oauth/token").respond_with_handler(echo)
    limit = DEFAULTS["MAX_CONTENT_LENGTH"]
    # A chunked body is counted as it arrives; at the limit it passes, whole, with a length.
    status, _, body = edge.request("POST", "/oauth/token", body=iter([b"a" * limit]))
    assert status == 200 and json.loads(body)["length"] == limit
    assert json.loads(body)["headers"]["Content-Length"] == str(limit)
    served = len(httpserver.log)
    assert_problem(*edge.request("POST", "/oauth/token", body=iter([b"a" * limit, b"a"])), 413)
    assert_problem(*edge.request("POST", "/oauth/token", body=b"a" * (5 * 1024 * 1024)), 413)
    assert_problem(*edge.request("GET", "/" + "a" * 5000), 414)
    assert_problem(*edge.request("GET", "/api/v1/me", headers={"X-Big": "a" * 5000}), 431)
    assert_problem(*edge.request("GET", "/metrics"), 404)
    assert len(httpserver.log) == served  # none of them reached an app server


@needs_nginx
def test_nginx_answers_bad_http_and_plain_http_with_problem_documents(edge: Edge) -> None:
    with socket.create_connection(("127.0.0.1", edge.port)) as raw:
        with edge.context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n")
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/problem+json" in head
    ProblemSchema().load(json.loads(body))
    plain = http.client.HTTPConnection("127.0.0.1", edge.port, timeout=10)
    plain.request("GET", "/readyz")
    response = plain.getresponse()
    assert_problem(response.status, dict(response.getheaders()), response.read(), 400)
    plain.close()


@needs_nginx
def test_nginx_speaks_tls_1_2_and_1_3_only_to_the_layout_certificate(edge: Edge) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        edge.context.minimum_version = edge.context.maximum_version = version
        with socket.create_connection(("127.0.0.1", edge.port)) as raw:
            with edge.context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() == version.name.replace("_", ".")


@needs_nginx
def test_nginx_answers_502_as_a_problem_when_no_app_server_does(
    edge: Edge, httpserver: HTTPServer
) -> None:
    httpserver.stop()  # app2 was never up
    try:
        assert_problem(*edge.request("GET", "/api/v1/me"), 502)
    finally:
        httpserver.start()


# --- deploy/local, for real -----------------------------------------------------------------


@pytest.mark.skipif(
    os.environ.get("ALERTSHARE_TEST_DEPLOY_LOCAL") != "1",
    reason="brings the whole layout up (half a minute or more): set ALERTSHARE_TEST_DEPLOY_LOCAL=1",
)
def test_local_layout_comes_up_serves_through_nginx_and_goes_down(state_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTSHARE_")}
    env["ALERTSHARE_LOCAL_DIR"] = str(state_dir)
    up = subprocess.run([str(LOCAL_UP)], env=env, capture_output=True, text=True, timeout=600)
    pids: list[int] = []
    try:
        assert up.returncode == 0, up.stderr
        pids = [
            int(p.read_text())
            for p in [*state_dir.glob("run/*.pid"), state_dir / "nginx" / "nginx.pid"]
        ]
        check_local_layout(state_dir, up.stdout, env)
        again = subprocess.run(
            [str(LOCAL_UP)], env=env, capture_output=True, text=True, timeout=600
        )
        assert again.returncode == 0, again.stderr
        assert "starting" not in again.stderr  # everything was running: nothing restarted
        assert sorted(int(p.read_text()) for p in state_dir.glob("run/*.pid")) == sorted(pids[:-1])
    finally:
        down = subprocess.run(
            [str(LOCAL_DOWN)], env=env, capture_output=True, text=True, timeout=300
        )
    assert down.returncode == 0, down.stderr
    assert not state_dir.exists()
    assert pids and not [pid for pid in pids if running(pid)]


def check_local_layout(state: Path, printed: str, env: Mapping[str, str]) -> None:
    """Through nginx: ready, a client made with the CLI gets a token and is served, the real
    client address reaches the audit log, and metrics are not public."""
    url = re.search(r"URL\s+(https://\S+)", printed).group(1)  # type: ignore[union-attr]
    context = ssl.create_default_context(cafile=str(state / "tls" / "ca.crt"))

    def call(path: str, data: bytes | None = None, **headers: str) -> Any:
        request = urllib.request.Request(url + path, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return json.load(response)

    assert call("/readyz") == {"status": "ready"}
    cli = [str(state / "alertshare")]
    subprocess.run(
        [
            *cli,
            "agency",
            "add",
            "local-cs",
            "--name",
            "Local CS",
            "--type",
            "children_social_care",
            "--duty-contact",
            "01234 567890",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    added = subprocess.run(
        [*cli, "client", "add", "local-cs", "--name", "Case system", "--scope", "households:read"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    client_id = re.search(r"client_id: (\S+)", added).group(1)  # type: ignore[union-attr]
    secret = re.search(r"client_secret: (\S+)", added).group(1)  # type: ignore[union-attr]
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    token = call("/oauth/token", b"grant_type=client_credentials", Authorization=f"Basic {basic}")[
        "access_token"
    ]
    me = call(
        "/api/v1/me",
        **{
            "Authorization": f"Bearer {token}",
            "X-Request-Id": "local-me-1",
            "X-Acting-Practitioner": "sw-0042",
            "X-Purpose-Of-Use": "pre_visit",
            "X-Forwarded-For": "203.0.113.9",
        },
    )
    assert me["agency"]["id"] == "local-cs" and me["client_id"] == client_id
    owner_url = env_file(state / "owner.env")["ALERTSHARE_DATABASE_URL"]
    engine = create_engine(owner_url)
    try:
        with engine.connect() as connection:
            address = connection.execute(
                text("SELECT source_address FROM audit_entry WHERE request_id = 'local-me-1'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert address == "127.0.0.1"  # nginx's client, not what the client claimed
    with pytest.raises(urllib.error.HTTPError) as refused:
        call("/metrics")
    refused.value.close()
    assert refused.value.code == 404
    ports = env_file(state / "ports.env")
    metrics = f"http://127.0.0.1:{ports['APP1_METRICS_PORT']}/metrics"
    with urllib.request.urlopen(metrics, timeout=10) as response:
        assert b"alertshare_http_requests" in response.read()
